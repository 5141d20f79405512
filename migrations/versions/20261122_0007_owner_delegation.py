"""procedure owner region (studio scope); task delegation (委派) and added signers (加签)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# task columns that reference another row: (column, foreign key name, referenced table)
_TASK_FKS = [
    ("owner_id", "fk_task_owner_id_user_account", "user_account"),
    ("parent_task_id", "fk_task_parent_task_id_task", "task"),
]


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.add_column("procedure", sa.Column("owner_region_code", sa.String(length=12), nullable=True))
    op.create_index("ix_procedure_owner_region_code", "procedure", ["owner_region_code"], unique=False)
    for column, fk_name, table in _TASK_FKS:
        if sqlite:  # SQLite adds a column with its reference inline, never as a separate constraint
            op.execute(f"ALTER TABLE task ADD COLUMN {column} INTEGER CONSTRAINT {fk_name} REFERENCES {table} (id)")
        else:
            op.add_column("task", sa.Column(column, sa.Integer(), nullable=True))
            op.create_foreign_key(fk_name, "task", table, [column], ["id"])
        op.create_index(f"ix_task_{column}", "task", [column], unique=False)
    op.add_column("task", sa.Column("delegation", sa.String(length=16), nullable=True))
    op.add_column("task", sa.Column("sign_position", sa.String(length=8), nullable=True))
    op.add_column("task", sa.Column("pending", sa.JSON(), nullable=True))


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.drop_column("task", "pending")
    op.drop_column("task", "sign_position")
    op.drop_column("task", "delegation")
    for column, fk_name, _table in reversed(_TASK_FKS):
        op.drop_index(f"ix_task_{column}", table_name="task")
        if sqlite:
            op.execute(f"ALTER TABLE task DROP COLUMN {column}")
        else:
            op.drop_constraint(fk_name, "task", type_="foreignkey")
            op.drop_column("task", column)
    op.drop_index("ix_procedure_owner_region_code", table_name="procedure")
    op.drop_column("procedure", "owner_region_code")
