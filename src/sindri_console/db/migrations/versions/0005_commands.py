"""command executions

Revision ID: 0005_commands
Revises: 0004_lifecycle
Create Date: 2026-11-28 15:33:50.084170
"""
from alembic import op
import sqlalchemy as sa
import sindri_console.db.base
from sqlalchemy.dialects import postgresql

revision = '0005_commands'
down_revision = '0004_lifecycle'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('command_executions',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('instance_id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=True),
    sa.Column('origin', sa.String(length=16), nullable=False),
    sa.Column('batch_id', sa.String(length=64), nullable=True),
    sa.Column('task_run_id', sa.String(length=64), nullable=True),
    sa.Column('remediation_id', sa.String(length=64), nullable=True),
    sa.Column('mode', sa.String(length=8), nullable=False),
    sa.Column('command', sa.Text(), nullable=True),
    sa.Column('args', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('interpreter', sa.String(length=128), nullable=True),
    sa.Column('script', sa.Text(), nullable=True),
    sa.Column('script_sha256', sa.String(length=64), nullable=True),
    sa.Column('env_keys', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('env_values', sa.Text(), nullable=True),
    sa.Column('stdin', sa.Text(), nullable=True),
    sa.Column('working_dir', sa.String(length=512), nullable=True),
    sa.Column('timeout_ms', sa.Integer(), nullable=False),
    sa.Column('output_limit_bytes', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error_code', sa.String(length=32), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('signal', sa.String(length=32), nullable=True),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('stdout', sa.Text(), nullable=True),
    sa.Column('stderr', sa.Text(), nullable=True),
    sa.Column('stdout_bytes', sa.BigInteger(), nullable=True),
    sa.Column('stderr_bytes', sa.BigInteger(), nullable=True),
    sa.Column('stdout_truncated', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('stderr_truncated', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('duration_ms', sa.Integer(), nullable=True),
    sa.Column('delivery_attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('sent_connection_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=True),
    sa.Column('started_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=True),
    sa.Column('completed_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=True),
    sa.Column('expires_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('result_deadline_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['instance_id'], ['instance.id'], name=op.f('fk_command_executions_instance_id_instance'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_command_executions_user_id_user_account'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_command_executions'))
    )
    with op.batch_alter_table('command_executions', schema=None) as batch_op:
        batch_op.create_index('ix_command_executions_batch_id', ['batch_id'], unique=False)
        batch_op.create_index('ix_command_executions_created_at_id', ['created_at', 'id'], unique=False)
        batch_op.create_index('ix_command_executions_instance_id_status_created_at', ['instance_id', 'status', 'created_at'], unique=False)
        batch_op.create_index('ix_command_executions_remediation_id', ['remediation_id'], unique=False)
        batch_op.create_index('ix_command_executions_status_expires_at', ['status', 'expires_at'], unique=False)
        batch_op.create_index('ix_command_executions_status_result_deadline_at', ['status', 'result_deadline_at'], unique=False)
        batch_op.create_index('ix_command_executions_task_run_id', ['task_run_id'], unique=False)
        batch_op.create_index('ix_command_executions_user_id_created_at', ['user_id', 'created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('command_executions', schema=None) as batch_op:
        batch_op.drop_index('ix_command_executions_user_id_created_at')
        batch_op.drop_index('ix_command_executions_task_run_id')
        batch_op.drop_index('ix_command_executions_status_result_deadline_at')
        batch_op.drop_index('ix_command_executions_status_expires_at')
        batch_op.drop_index('ix_command_executions_remediation_id')
        batch_op.drop_index('ix_command_executions_instance_id_status_created_at')
        batch_op.drop_index('ix_command_executions_created_at_id')
        batch_op.drop_index('ix_command_executions_batch_id')

    op.drop_table('command_executions')
