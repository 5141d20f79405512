"""signed notices: office keys and certificates, issued notices (immutable), batch jobs

Revision ID: 0003
Revises: 0003t
Create Date: 2026-11-22

Issued notices and the cases they cover are append-only, enforced by triggers like audit_event's
(0001): a reissue is a new row naming the one it supersedes.

This revision was planned to follow 0002 directly; 0003t (time limits) landed on main first from
0002, so it follows 0003t to keep one head (``alembic upgrade head`` refuses two).
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0003t"
branch_labels = None
depends_on = None

IMMUTABLE = ("issued_notice", "issued_notice_case")


def upgrade() -> None:
    op.create_table(
        "notice_authority",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("cert_pem", sa.Text(), nullable=False),
        sa.Column("key_pem", sa.Text(), nullable=False),
        sa.Column("key_encrypted", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notice_authority")),
    )
    op.create_table(
        "office_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("office_code", sa.String(length=200), nullable=False),
        sa.Column("region_code", sa.String(length=12), nullable=False),
        sa.Column("office_name", sa.String(length=120), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("authority_id", sa.Integer(), nullable=True),
        sa.Column("subject", sa.String(length=400), nullable=False),
        sa.Column("cert_pem", sa.Text(), nullable=False),
        sa.Column("chain_pem", sa.Text(), nullable=False),
        sa.Column("trust_root_pem", sa.Text(), nullable=True),
        sa.Column("key_pem", sa.Text(), nullable=False),
        sa.Column("key_encrypted", sa.Boolean(), nullable=False),
        sa.Column("cert_sha256", sa.String(length=64), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["authority_id"], ["notice_authority.id"],
                                name=op.f("fk_office_key_authority_id_notice_authority")),
        sa.ForeignKeyConstraint(["region_code"], ["region.code"], name=op.f("fk_office_key_region_code_region")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_office_key")),
        sa.UniqueConstraint("cert_sha256", name=op.f("uq_office_key_cert_sha256")),
    )
    op.create_index(op.f("ix_office_key_office_code"), "office_key", ["office_code"], unique=False)
    op.create_index(op.f("ix_office_key_region_code"), "office_key", ["region_code"], unique=False)
    op.create_index("uq_office_key_active", "office_key", ["office_code"], unique=True,
                    sqlite_where=sa.text("retired_at IS NULL"), postgresql_where=sa.text("retired_at IS NULL"))

    op.create_table(
        "notice_batch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("procedure_code", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.Enum("queued", "running", "done", "failed", name="noticebatchstatus",
                                    native_enum=False, length=24), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done_count", sa.Integer(), nullable=False),
        sa.Column("failed_count", sa.Integer(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["created_by_id"], ["user_account.id"],
                                name=op.f("fk_notice_batch_created_by_id_user_account")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notice_batch")),
    )
    op.create_index(op.f("ix_notice_batch_created_by_id"), "notice_batch", ["created_by_id"], unique=False)

    op.create_table(
        "issued_notice",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("serial", sa.String(length=32), nullable=False),
        sa.Column("procedure_code", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("kind_name", sa.String(length=40), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.Column("region_code", sa.String(length=12), nullable=False),
        sa.Column("office_key_id", sa.Integer(), nullable=False),
        sa.Column("office_name", sa.String(length=120), nullable=False),
        sa.Column("issued_by_id", sa.Integer(), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("document_date", sa.String(length=10), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("covers", sa.JSON(), nullable=False),
        sa.Column("template_sha256", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("page_count", sa.Integer(), nullable=False),
        sa.Column("supersedes_id", sa.Integer(), nullable=True),
        sa.Column("reissue_reason", sa.Text(), nullable=True),
        sa.Column("batch_id", sa.Integer(), nullable=True),
        sa.Column("group_key", sa.String(length=64), nullable=True),
        sa.Column("pdf", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["notice_batch.id"], name=op.f("fk_issued_notice_batch_id_notice_batch")),
        sa.ForeignKeyConstraint(["issued_by_id"], ["user_account.id"],
                                name=op.f("fk_issued_notice_issued_by_id_user_account")),
        sa.ForeignKeyConstraint(["office_key_id"], ["office_key.id"],
                                name=op.f("fk_issued_notice_office_key_id_office_key")),
        sa.ForeignKeyConstraint(["region_code"], ["region.code"], name=op.f("fk_issued_notice_region_code_region")),
        sa.ForeignKeyConstraint(["supersedes_id"], ["issued_notice.id"],
                                name=op.f("fk_issued_notice_supersedes_id_issued_notice")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_issued_notice")),
        sa.UniqueConstraint("serial", name=op.f("uq_issued_notice_serial")),
        sa.UniqueConstraint("supersedes_id", name=op.f("uq_issued_notice_supersedes_id")),
    )
    op.create_index(op.f("ix_issued_notice_batch_id"), "issued_notice", ["batch_id"], unique=False)
    op.create_index(op.f("ix_issued_notice_issued_at"), "issued_notice", ["issued_at"], unique=False)
    op.create_index(op.f("ix_issued_notice_issued_by_id"), "issued_notice", ["issued_by_id"], unique=False)
    op.create_index(op.f("ix_issued_notice_region_code"), "issued_notice", ["region_code"], unique=False)
    op.create_index(op.f("ix_issued_notice_sha256"), "issued_notice", ["sha256"], unique=False)

    op.create_table(
        "issued_notice_case",
        sa.Column("notice_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["case_instance.id"],
                                name=op.f("fk_issued_notice_case_case_id_case_instance")),
        sa.ForeignKeyConstraint(["notice_id"], ["issued_notice.id"],
                                name=op.f("fk_issued_notice_case_notice_id_issued_notice")),
        sa.PrimaryKeyConstraint("notice_id", "case_id", name=op.f("pk_issued_notice_case")),
    )
    op.create_index(op.f("ix_issued_notice_case_case_id"), "issued_notice_case", ["case_id"], unique=False)

    _append_only()


def _append_only() -> None:
    """Issued notices are immutable in the database too, not only in the code (as audit_event)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""
            CREATE FUNCTION issued_notice_immutable() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END;
            $$ LANGUAGE plpgsql""")
        for table in IMMUTABLE:
            op.execute(f"""CREATE TRIGGER {table}_no_update BEFORE UPDATE OR DELETE ON {table}
                           FOR EACH ROW EXECUTE FUNCTION issued_notice_immutable()""")
    else:
        for table in IMMUTABLE:
            for verb in ("UPDATE", "DELETE"):
                op.execute(f"""CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table}
                               BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END""")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in IMMUTABLE:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update ON {table}")
        op.execute("DROP FUNCTION IF EXISTS issued_notice_immutable()")
    else:
        for table in IMMUTABLE:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    op.drop_index(op.f("ix_issued_notice_case_case_id"), table_name="issued_notice_case")
    op.drop_table("issued_notice_case")
    for name in ("sha256", "region_code", "issued_by_id", "issued_at", "batch_id"):
        op.drop_index(op.f(f"ix_issued_notice_{name}"), table_name="issued_notice")
    op.drop_table("issued_notice")
    op.drop_index(op.f("ix_notice_batch_created_by_id"), table_name="notice_batch")
    op.drop_table("notice_batch")
    op.drop_index("uq_office_key_active", table_name="office_key")
    op.drop_index(op.f("ix_office_key_region_code"), table_name="office_key")
    op.drop_index(op.f("ix_office_key_office_code"), table_name="office_key")
    op.drop_table("office_key")
    op.drop_table("notice_authority")
