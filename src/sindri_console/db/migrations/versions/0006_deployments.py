"""deployments, templates and the secrets vault table

Revision ID: 0006_deployments
Revises: 0005_commands
Create Date: 2026-11-28 15:34:22.155851
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import sindri_console.db.base

revision = '0006_deployments'
down_revision = '0005_commands'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('deployment_templates',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('slug', sa.String(length=128), nullable=False),
    sa.Column('category', sa.String(length=64), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('yaml_content', sa.Text(), nullable=False),
    sa.Column('provider', sa.String(length=32), nullable=True),
    sa.Column('profile', sa.String(length=64), nullable=True),
    sa.Column('extensions', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('provider_recommendations', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('is_official', sa.Boolean(), server_default=sa.text('(false)'), nullable=False),
    sa.Column('validation', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=True),
    sa.Column('created_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deployment_templates'))
    )
    with op.batch_alter_table('deployment_templates', schema=None) as batch_op:
        batch_op.create_index('ix_deployment_templates_category', ['category'], unique=False)
        batch_op.create_index('ix_deployment_templates_is_official_created_at', [sa.literal_column('is_official DESC'), sa.literal_column('created_at DESC')], unique=False)
        batch_op.create_index('uq_deployment_templates_slug', ['slug'], unique=True)

    op.create_table('template_seed_marks',
    sa.Column('slug', sa.String(length=128), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('seeded_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('slug', name=op.f('pk_template_seed_marks'))
    )
    op.create_table('deployments',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('instance_id', sa.String(length=64), nullable=False),
    sa.Column('template_id', sa.String(length=64), nullable=True),
    sa.Column('team_id', sa.String(length=64), nullable=True),
    sa.Column('provider', sa.String(length=32), nullable=False),
    sa.Column('region', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('yaml_content', sa.Text(), nullable=False),
    sa.Column('config_hash', sa.String(length=64), nullable=False),
    sa.Column('declared', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('secret_names', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('docker_host', sa.String(length=512), nullable=True),
    sa.Column('warnings', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('initiated_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('started_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=True),
    sa.Column('completed_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=True),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('error', sa.String(length=2048), nullable=True),
    sa.Column('logs', sa.Text(), server_default='', nullable=False),
    sa.Column('logs_bytes', sa.Integer(), server_default='0', nullable=False),
    sa.Column('logs_truncated', sa.Boolean(), server_default=sa.text('(false)'), nullable=False),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.Column('lease_expires_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['instance_id'], ['instance.id'], name=op.f('fk_deployments_instance_id_instance'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['template_id'], ['deployment_templates.id'], name=op.f('fk_deployments_template_id_deployment_templates'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deployments'))
    )
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.create_index('ix_deployments_created_at_status_instance_id', ['created_at', 'status', 'instance_id'], unique=False)
        batch_op.create_index('ix_deployments_initiated_by_created_at', ['initiated_by', 'created_at'], unique=False)
        batch_op.create_index('ix_deployments_instance_id_created_at', ['instance_id', sa.literal_column('created_at DESC')], unique=False)
        batch_op.create_index('ix_deployments_status_created_at', ['status', 'created_at'], unique=False)
        batch_op.create_index('ix_deployments_template_id', ['template_id'], unique=False)


    op.create_table('vault_secret',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('instance_id', sa.String(length=64), nullable=True),
    sa.Column('scope_key', sa.String(length=64), nullable=False),
    sa.Column('description', sa.String(length=512), nullable=True),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('scope', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('kek_id', sa.String(length=16), nullable=False),
    sa.Column('wrapped_dek', sa.LargeBinary(), nullable=False),
    sa.Column('dek_nonce', sa.LargeBinary(), nullable=False),
    sa.Column('value_nonce', sa.LargeBinary(), nullable=False),
    sa.Column('ciphertext', sa.LargeBinary(), nullable=False),
    sa.Column('expires_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=True),
    sa.Column('created_by', sa.String(length=64), nullable=True),
    sa.Column('created_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('last_rotated_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=True),
    sa.Column('last_revealed_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=True),
    sa.Column('last_revealed_by', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['instance_id'], ['instance.id'], name=op.f('fk_vault_secret_instance_id_instance'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vault_secret'))
    )
    with op.batch_alter_table('vault_secret', schema=None) as batch_op:
        batch_op.create_index('ix_vault_secret_expires_at', ['expires_at'], unique=False)
        batch_op.create_index('ix_vault_secret_instance_id', ['instance_id'], unique=False)
        batch_op.create_index('ix_vault_secret_kek_id', ['kek_id'], unique=False)
        batch_op.create_index('uq_vault_secret_name_scope_key', ['name', 'scope_key'], unique=True)


def downgrade() -> None:
    op.drop_table('vault_secret')
    op.drop_table('deployments')
    op.drop_table('template_seed_marks')
    op.drop_table('deployment_templates')
