"""agents: reports, extension status, frame receipts, llm usage

Revision ID: 0003_agents
Revises: 0002_metrics
Create Date: 2026-11-28 15:55:00
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import sindri_console.db.base

revision = '0003_agents'
down_revision = '0002_metrics'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('agent_report',
    sa.Column('instance_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('taken_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('received_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('request_id', sa.String(length=64), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('available', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('reason', sa.String(length=256), nullable=True),
    sa.Column('item_count', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('payload', JSON, nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['instance.id'], name=op.f('fk_agent_report_instance_id_instance'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('instance_id', 'kind', name=op.f('pk_agent_report'))
    )
    op.create_table('extension_status',
    sa.Column('instance_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('status_since', sindri_console.db.base.UtcDateTime(timezone=True), nullable=True),
    sa.Column('error', sa.String(length=1024), nullable=True),
    sa.Column('reported_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['instance.id'],
                            name=op.f('fk_extension_status_instance_id_instance'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('instance_id', 'name', name=op.f('pk_extension_status'))
    )
    op.create_index('ix_extension_status_name_status', 'extension_status', ['name', 'status'], unique=False)
    op.create_table('agent_frame_receipt',
    sa.Column('instance_id', sa.String(length=64), nullable=False),
    sa.Column('frame_id', sa.String(length=64), nullable=False),
    sa.Column('received_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['instance.id'],
                            name=op.f('fk_agent_frame_receipt_instance_id_instance'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('instance_id', 'frame_id', name=op.f('pk_agent_frame_receipt'))
    )
    op.create_index('ix_agent_frame_receipt_received_at', 'agent_frame_receipt', ['received_at'], unique=False)
    op.create_table('llm_usage',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('instance_id', sa.String(length=64), nullable=False),
    sa.Column('ts', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('provider', sa.String(length=64), nullable=False),
    sa.Column('model', sa.String(length=256), nullable=False),
    sa.Column('matched_model', sa.String(length=256), nullable=True),
    sa.Column('operation', sa.String(length=64), nullable=True),
    sa.Column('input_tokens', sa.BigInteger(), nullable=False),
    sa.Column('output_tokens', sa.BigInteger(), nullable=False),
    sa.Column('cache_read_tokens', sa.BigInteger(), nullable=False),
    sa.Column('cache_write_tokens', sa.BigInteger(), nullable=False),
    sa.Column('cost_micros', sa.BigInteger(), nullable=True),
    sa.Column('reported_cost_micros', sa.BigInteger(), nullable=True),
    sa.Column('price_source', sa.String(length=16), nullable=True),
    sa.Column('capture_tier', sa.String(length=16), nullable=True),
    sa.Column('trace_id', sa.String(length=128), nullable=True),
    sa.Column('dedupe_key', sa.String(length=64), nullable=False),
    sa.Column('received_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['instance.id'], name=op.f('fk_llm_usage_instance_id_instance'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_llm_usage')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_llm_usage_dedupe_key'))
    )
    op.create_index('ix_llm_usage_instance_id_ts', 'llm_usage', ['instance_id', 'ts'], unique=False)
    op.create_index('ix_llm_usage_provider_model', 'llm_usage', ['provider', 'model'], unique=False)
    op.create_index('ix_llm_usage_ts', 'llm_usage', ['ts'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_llm_usage_ts', table_name='llm_usage')
    op.drop_index('ix_llm_usage_provider_model', table_name='llm_usage')
    op.drop_index('ix_llm_usage_instance_id_ts', table_name='llm_usage')
    op.drop_table('llm_usage')
    op.drop_index('ix_agent_frame_receipt_received_at', table_name='agent_frame_receipt')
    op.drop_table('agent_frame_receipt')
    op.drop_index('ix_extension_status_name_status', table_name='extension_status')
    op.drop_table('extension_status')
    op.drop_table('agent_report')
