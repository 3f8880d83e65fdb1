"""lifecycle jobs and backups

Revision ID: 0004_lifecycle
Revises: 0003_agents
Create Date: 2026-11-28 15:34:00.180034
"""
from alembic import op
import sqlalchemy as sa
import sindri_console.db.base
from sqlalchemy.dialects import postgresql

revision = '0004_lifecycle'
down_revision = '0003_agents'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('instance_job',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('instance_id', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('previous_status', sa.String(length=16), nullable=False),
    sa.Column('params', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('step', sa.String(length=16), nullable=True),
    sa.Column('bulk_id', sa.String(length=64), nullable=True),
    sa.Column('requested_by', sa.String(length=64), nullable=True),
    sa.Column('created_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('started_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=True),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('error', sa.String(length=1024), nullable=True),
    sa.Column('output', sa.Text(), nullable=True),
    sa.Column('lease_owner', sa.String(length=64), nullable=True),
    sa.Column('lease_expires_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['instance_id'], ['instance.id'], name=op.f('fk_instance_job_instance_id_instance'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_instance_job'))
    )
    with op.batch_alter_table('instance_job', schema=None) as batch_op:
        batch_op.create_index('ix_instance_job_bulk_id', ['bulk_id'], unique=False)
        batch_op.create_index('ix_instance_job_finished_at', ['finished_at'], unique=False)
        batch_op.create_index('ix_instance_job_instance_id_created_at', ['instance_id', 'created_at'], unique=False)
        batch_op.create_index('ix_instance_job_status_created_at', ['status', 'created_at'], unique=False)
        batch_op.create_index('uq_instance_job_active_instance', ['instance_id'], unique=True, sqlite_where=sa.text("status IN ('QUEUED', 'RUNNING')"), postgresql_where=sa.text("status IN ('QUEUED', 'RUNNING')"))

    op.create_table('backup',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('instance_id', sa.String(length=64), nullable=False),
    sa.Column('job_id', sa.String(length=64), nullable=True),
    sa.Column('label', sa.String(length=128), nullable=False),
    sa.Column('profile', sa.String(length=16), nullable=False),
    sa.Column('compression_level', sa.Integer(), nullable=False),
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('location', sa.String(length=256), nullable=True),
    sa.Column('size_bytes', sa.BigInteger(), nullable=True),
    sa.Column('error', sa.String(length=1024), nullable=True),
    sa.Column('requested_by', sa.String(length=64), nullable=True),
    sa.Column('created_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('completed_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['instance_id'], ['instance.id'], name=op.f('fk_backup_instance_id_instance'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id'], ['instance_job.id'], name=op.f('fk_backup_job_id_instance_job'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_backup'))
    )
    with op.batch_alter_table('backup', schema=None) as batch_op:
        batch_op.create_index('ix_backup_instance_id_created_at', ['instance_id', 'created_at'], unique=False)
        batch_op.create_index('ix_backup_job_id', ['job_id'], unique=False)
        batch_op.create_index('uq_backup_instance_label', ['instance_id', 'label'], unique=True, sqlite_where=sa.text("status <> 'FAILED'"), postgresql_where=sa.text("status <> 'FAILED'"))


def downgrade() -> None:
    with op.batch_alter_table('backup', schema=None) as batch_op:
        batch_op.drop_index('uq_backup_instance_label', sqlite_where=sa.text("status <> 'FAILED'"), postgresql_where=sa.text("status <> 'FAILED'"))
        batch_op.drop_index('ix_backup_job_id')
        batch_op.drop_index('ix_backup_instance_id_created_at')

    op.drop_table('backup')
    with op.batch_alter_table('instance_job', schema=None) as batch_op:
        batch_op.drop_index('uq_instance_job_active_instance', sqlite_where=sa.text("status IN ('QUEUED', 'RUNNING')"), postgresql_where=sa.text("status IN ('QUEUED', 'RUNNING')"))
        batch_op.drop_index('ix_instance_job_status_created_at')
        batch_op.drop_index('ix_instance_job_instance_id_created_at')
        batch_op.drop_index('ix_instance_job_finished_at')
        batch_op.drop_index('ix_instance_job_bulk_id')

    op.drop_table('instance_job')
