"""create core tables

Revision ID: 0001
Revises: 
Create Date: 2026-11-22
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('procedure',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_procedure')),
    sa.UniqueConstraint('code', name=op.f('uq_procedure_code'))
    )
    op.create_table('region',
    sa.Column('code', sa.String(length=12), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('level', sa.Enum('province', 'city', 'county', 'township', 'village', name='regionlevel', native_enum=False, length=24), nullable=False),
    sa.Column('parent_code', sa.String(length=12), nullable=True),
    sa.ForeignKeyConstraint(['parent_code'], ['region.code'], name=op.f('fk_region_parent_code_region')),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_region'))
    )
    with op.batch_alter_table('region', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_region_parent_code'), ['parent_code'], unique=False)

    op.create_table('role',
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('level', sa.Enum('province', 'city', 'county', 'township', 'village', name='regionlevel', native_enum=False, length=24), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_role'))
    )
    op.create_table('user_account',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=80), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('is_demo', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_account')),
    sa.UniqueConstraint('username', name=op.f('uq_user_account_username'))
    )
    op.create_table('procedure_version',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('procedure_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('process_id', sa.String(length=120), nullable=False),
    sa.Column('files', sa.JSON(), nullable=False),
    sa.Column('spec_json', sa.Text(), nullable=False),
    sa.Column('deployed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deployed_by', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['procedure_id'], ['procedure.id'], name=op.f('fk_procedure_version_procedure_id_procedure')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_procedure_version')),
    sa.UniqueConstraint('procedure_id', 'content_hash', name='uq_procedure_version_content'),
    sa.UniqueConstraint('procedure_id', 'version', name=op.f('uq_procedure_version_procedure_id'))
    )
    with op.batch_alter_table('procedure_version', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_procedure_version_procedure_id'), ['procedure_id'], unique=False)

    op.create_table('subject',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('region_code', sa.String(length=12), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('id_number', sa.String(length=18), nullable=True),
    sa.Column('attrs', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['region_code'], ['region.code'], name=op.f('fk_subject_region_code_region')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subject'))
    )
    with op.batch_alter_table('subject', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subject_id_number'), ['id_number'], unique=False)
        batch_op.create_index(batch_op.f('ix_subject_region_code'), ['region_code'], unique=False)

    op.create_table('user_role',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('role_code', sa.String(length=40), nullable=False),
    sa.Column('region_code', sa.String(length=12), nullable=False),
    sa.ForeignKeyConstraint(['region_code'], ['region.code'], name=op.f('fk_user_role_region_code_region')),
    sa.ForeignKeyConstraint(['role_code'], ['role.code'], name=op.f('fk_user_role_role_code_role')),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_user_role_user_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_role')),
    sa.UniqueConstraint('user_id', 'role_code', 'region_code', name=op.f('uq_user_role_user_id'))
    )
    with op.batch_alter_table('user_role', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_role_user_id'), ['user_id'], unique=False)

    op.create_table('case_instance',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('procedure_version_id', sa.Integer(), nullable=False),
    sa.Column('subject_id', sa.Integer(), nullable=False),
    sa.Column('region_code', sa.String(length=12), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('status', sa.Enum('running', 'exited', 'delayed_exit', 'approved', 'rejected', 'completed', 'identified', 'withdrawn', name='casestatus', native_enum=False, length=24), nullable=False),
    sa.Column('outcome_reason', sa.Text(), nullable=True),
    sa.Column('state', sa.Text(), nullable=False),
    sa.Column('serializer_version', sa.String(length=16), nullable=False),
    sa.Column('lock_version', sa.Integer(), nullable=False),
    sa.Column('return_count', sa.Integer(), nullable=False),
    sa.Column('started_by_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['procedure_version_id'], ['procedure_version.id'], name=op.f('fk_case_instance_procedure_version_id_procedure_version')),
    sa.ForeignKeyConstraint(['region_code'], ['region.code'], name=op.f('fk_case_instance_region_code_region')),
    sa.ForeignKeyConstraint(['started_by_id'], ['user_account.id'], name=op.f('fk_case_instance_started_by_id_user_account')),
    sa.ForeignKeyConstraint(['subject_id'], ['subject.id'], name=op.f('fk_case_instance_subject_id_subject')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_instance'))
    )
    with op.batch_alter_table('case_instance', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_instance_procedure_version_id'), ['procedure_version_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_case_instance_region_code'), ['region_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_case_instance_started_by_id'), ['started_by_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_case_instance_subject_id'), ['subject_id'], unique=False)

    op.create_table('task',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('spiff_task_id', sa.String(length=36), nullable=False),
    sa.Column('spec_name', sa.String(length=120), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('lane', sa.String(length=120), nullable=True),
    sa.Column('role_code', sa.String(length=40), nullable=False),
    sa.Column('region_code', sa.String(length=12), nullable=False),
    sa.Column('scope_code', sa.String(length=12), nullable=False),
    sa.Column('form_key', sa.String(length=160), nullable=True),
    sa.Column('actions', sa.String(length=80), nullable=False),
    sa.Column('status', sa.Enum('open', 'completed', 'cancelled', name='taskstatus', native_enum=False, length=24), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completed_by_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=16), nullable=True),
    sa.Column('opinion', sa.Text(), nullable=True),
    sa.Column('data', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['case_instance.id'], name=op.f('fk_task_case_id_case_instance')),
    sa.ForeignKeyConstraint(['completed_by_id'], ['user_account.id'], name=op.f('fk_task_completed_by_id_user_account')),
    sa.ForeignKeyConstraint(['role_code'], ['role.code'], name=op.f('fk_task_role_code_role')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_task'))
    )
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.create_index('ix_task_case_spiff', ['case_id', 'spiff_task_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_task_completed_by_id'), ['completed_by_id'], unique=False)
        batch_op.create_index('ix_task_inbox', ['status', 'role_code', 'scope_code', 'due_at'], unique=False)

    op.create_table('timer',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('spiff_task_id', sa.String(length=36), nullable=False),
    sa.Column('spec_name', sa.String(length=120), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.Enum('waiting', 'fired', 'cancelled', name='timerstatus', native_enum=False, length=24), nullable=False),
    sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('fired_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['case_instance.id'], name=op.f('fk_timer_case_id_case_instance')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_timer')),
    sa.UniqueConstraint('case_id', 'spiff_task_id', name='uq_timer_case_task')
    )
    with op.batch_alter_table('timer', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_timer_case_id'), ['case_id'], unique=False)
        batch_op.create_index('ix_timer_due', ['status', 'due_at'], unique=False)

    op.create_table('audit_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=True),
    sa.Column('task_id', sa.Integer(), nullable=True),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('step', sa.String(length=200), nullable=True),
    sa.Column('opinion', sa.Text(), nullable=True),
    sa.Column('data_diff', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('client_addr', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['case_instance.id'], name=op.f('fk_audit_event_case_id_case_instance')),
    sa.ForeignKeyConstraint(['task_id'], ['task.id'], name=op.f('fk_audit_event_task_id_task')),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_audit_event_user_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_event'))
    )
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_event_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_event_created_at'), ['created_at'], unique=False)

    _audit_append_only()


def _audit_append_only() -> None:
    """The audit log is append-only in the database too, not only in the code."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""
            CREATE FUNCTION audit_event_immutable() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION 'audit_event is append-only'; END;
            $$ LANGUAGE plpgsql""")
        op.execute("""CREATE TRIGGER audit_event_no_update BEFORE UPDATE OR DELETE ON audit_event
                      FOR EACH ROW EXECUTE FUNCTION audit_event_immutable()""")
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"""CREATE TRIGGER audit_event_no_{verb.lower()} BEFORE {verb} ON audit_event
                           BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END""")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_update ON audit_event")
        op.execute("DROP FUNCTION IF EXISTS audit_event_immutable()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_delete")
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_event_created_at'))
        batch_op.drop_index(batch_op.f('ix_audit_event_case_id'))

    op.drop_table('audit_event')
    with op.batch_alter_table('timer', schema=None) as batch_op:
        batch_op.drop_index('ix_timer_due')
        batch_op.drop_index(batch_op.f('ix_timer_case_id'))

    op.drop_table('timer')
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.drop_index('ix_task_inbox')
        batch_op.drop_index(batch_op.f('ix_task_completed_by_id'))
        batch_op.drop_index('ix_task_case_spiff')

    op.drop_table('task')
    with op.batch_alter_table('case_instance', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_instance_subject_id'))
        batch_op.drop_index(batch_op.f('ix_case_instance_started_by_id'))
        batch_op.drop_index(batch_op.f('ix_case_instance_region_code'))
        batch_op.drop_index(batch_op.f('ix_case_instance_procedure_version_id'))

    op.drop_table('case_instance')
    with op.batch_alter_table('user_role', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_role_user_id'))

    op.drop_table('user_role')
    with op.batch_alter_table('subject', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subject_region_code'))
        batch_op.drop_index(batch_op.f('ix_subject_id_number'))

    op.drop_table('subject')
    with op.batch_alter_table('procedure_version', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_procedure_version_procedure_id'))

    op.drop_table('procedure_version')
    op.drop_table('user_account')
    op.drop_table('role')
    with op.batch_alter_table('region', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_region_parent_code'))

    op.drop_table('region')
    op.drop_table('procedure')
