"""metrics tables

Revision ID: 0002_metrics
Revises: 0001_core
Create Date: 2026-11-28 15:29:06.380272
"""
from alembic import op
import sqlalchemy as sa
import sindri_console.db.base


revision = '0002_metrics'
down_revision = '0001_core'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rollup_state',
    sa.Column('name', sa.String(length=8), nullable=False),
    sa.Column('watermark_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_rollup_state'))
    )
    op.create_table('metric_1h',
    sa.Column('instance_id', sa.String(length=64), nullable=False),
    sa.Column('bucket_ms', sa.BigInteger(), nullable=False),
    sa.Column('sample_count', sa.Integer(), nullable=False),
    sa.Column('cpu_avg', sa.Float(), nullable=True),
    sa.Column('cpu_max', sa.Float(), nullable=True),
    sa.Column('mem_used_avg', sa.Float(), nullable=True),
    sa.Column('mem_used_max', sa.BigInteger(), nullable=True),
    sa.Column('disk_used_avg', sa.Float(), nullable=True),
    sa.Column('disk_used_max', sa.BigInteger(), nullable=True),
    sa.Column('load_avg_1_avg', sa.Float(), nullable=True),
    sa.Column('load_avg_1_max', sa.Float(), nullable=True),
    sa.Column('net_rx_bps_avg', sa.Float(), nullable=True),
    sa.Column('net_rx_bps_max', sa.BigInteger(), nullable=True),
    sa.Column('net_tx_bps_avg', sa.Float(), nullable=True),
    sa.Column('net_tx_bps_max', sa.BigInteger(), nullable=True),
    sa.Column('mem_total_max', sa.BigInteger(), nullable=True),
    sa.Column('disk_total_max', sa.BigInteger(), nullable=True),
    sa.Column('core_count_max', sa.Integer(), nullable=True),
    sa.Column('mem_used_n', sa.Integer(), nullable=False),
    sa.Column('disk_used_n', sa.Integer(), nullable=False),
    sa.Column('load_avg_1_n', sa.Integer(), nullable=False),
    sa.Column('net_rx_bps_n', sa.Integer(), nullable=False),
    sa.Column('net_tx_bps_n', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['instance.id'], name=op.f('fk_metric_1h_instance_id_instance'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('instance_id', 'bucket_ms', name=op.f('pk_metric_1h'))
    )
    with op.batch_alter_table('metric_1h', schema=None) as batch_op:
        batch_op.create_index('ix_metric_1h_bucket_ms', ['bucket_ms'], unique=False)

    op.create_table('metric_1m',
    sa.Column('instance_id', sa.String(length=64), nullable=False),
    sa.Column('bucket_ms', sa.BigInteger(), nullable=False),
    sa.Column('sample_count', sa.Integer(), nullable=False),
    sa.Column('cpu_avg', sa.Float(), nullable=True),
    sa.Column('cpu_max', sa.Float(), nullable=True),
    sa.Column('mem_used_avg', sa.Float(), nullable=True),
    sa.Column('mem_used_max', sa.BigInteger(), nullable=True),
    sa.Column('disk_used_avg', sa.Float(), nullable=True),
    sa.Column('disk_used_max', sa.BigInteger(), nullable=True),
    sa.Column('load_avg_1_avg', sa.Float(), nullable=True),
    sa.Column('load_avg_1_max', sa.Float(), nullable=True),
    sa.Column('net_rx_bps_avg', sa.Float(), nullable=True),
    sa.Column('net_rx_bps_max', sa.BigInteger(), nullable=True),
    sa.Column('net_tx_bps_avg', sa.Float(), nullable=True),
    sa.Column('net_tx_bps_max', sa.BigInteger(), nullable=True),
    sa.Column('mem_total_max', sa.BigInteger(), nullable=True),
    sa.Column('disk_total_max', sa.BigInteger(), nullable=True),
    sa.Column('core_count_max', sa.Integer(), nullable=True),
    sa.Column('mem_used_n', sa.Integer(), nullable=False),
    sa.Column('disk_used_n', sa.Integer(), nullable=False),
    sa.Column('load_avg_1_n', sa.Integer(), nullable=False),
    sa.Column('net_rx_bps_n', sa.Integer(), nullable=False),
    sa.Column('net_tx_bps_n', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['instance.id'], name=op.f('fk_metric_1m_instance_id_instance'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('instance_id', 'bucket_ms', name=op.f('pk_metric_1m'))
    )
    with op.batch_alter_table('metric_1m', schema=None) as batch_op:
        batch_op.create_index('ix_metric_1m_bucket_ms', ['bucket_ms'], unique=False)

    op.create_table('metric_15m',
    sa.Column('instance_id', sa.String(length=64), nullable=False),
    sa.Column('bucket_ms', sa.BigInteger(), nullable=False),
    sa.Column('sample_count', sa.Integer(), nullable=False),
    sa.Column('cpu_avg', sa.Float(), nullable=True),
    sa.Column('cpu_max', sa.Float(), nullable=True),
    sa.Column('mem_used_avg', sa.Float(), nullable=True),
    sa.Column('mem_used_max', sa.BigInteger(), nullable=True),
    sa.Column('disk_used_avg', sa.Float(), nullable=True),
    sa.Column('disk_used_max', sa.BigInteger(), nullable=True),
    sa.Column('load_avg_1_avg', sa.Float(), nullable=True),
    sa.Column('load_avg_1_max', sa.Float(), nullable=True),
    sa.Column('net_rx_bps_avg', sa.Float(), nullable=True),
    sa.Column('net_rx_bps_max', sa.BigInteger(), nullable=True),
    sa.Column('net_tx_bps_avg', sa.Float(), nullable=True),
    sa.Column('net_tx_bps_max', sa.BigInteger(), nullable=True),
    sa.Column('mem_total_max', sa.BigInteger(), nullable=True),
    sa.Column('disk_total_max', sa.BigInteger(), nullable=True),
    sa.Column('core_count_max', sa.Integer(), nullable=True),
    sa.Column('mem_used_n', sa.Integer(), nullable=False),
    sa.Column('disk_used_n', sa.Integer(), nullable=False),
    sa.Column('load_avg_1_n', sa.Integer(), nullable=False),
    sa.Column('net_rx_bps_n', sa.Integer(), nullable=False),
    sa.Column('net_tx_bps_n', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['instance.id'], name=op.f('fk_metric_15m_instance_id_instance'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('instance_id', 'bucket_ms', name=op.f('pk_metric_15m'))
    )
    with op.batch_alter_table('metric_15m', schema=None) as batch_op:
        batch_op.create_index('ix_metric_15m_bucket_ms', ['bucket_ms'], unique=False)

    op.create_table('metric_dirty',
    sa.Column('instance_id', sa.String(length=64), nullable=False),
    sa.Column('minute_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['instance.id'], name=op.f('fk_metric_dirty_instance_id_instance'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('instance_id', 'minute_ms', name=op.f('pk_metric_dirty'))
    )
    op.create_table('metric_latest',
    sa.Column('instance_id', sa.String(length=64), nullable=False),
    sa.Column('ts_ms', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('cpu_percent', sa.Float(), nullable=False),
    sa.Column('load_avg_1', sa.Float(), nullable=True),
    sa.Column('load_avg_5', sa.Float(), nullable=True),
    sa.Column('load_avg_15', sa.Float(), nullable=True),
    sa.Column('cpu_steal_percent', sa.Float(), nullable=True),
    sa.Column('core_count', sa.Integer(), nullable=True),
    sa.Column('mem_used_bytes', sa.BigInteger(), nullable=False),
    sa.Column('mem_total_bytes', sa.BigInteger(), nullable=False),
    sa.Column('mem_cached_bytes', sa.BigInteger(), nullable=True),
    sa.Column('swap_used_bytes', sa.BigInteger(), nullable=True),
    sa.Column('swap_total_bytes', sa.BigInteger(), nullable=True),
    sa.Column('disk_used_bytes', sa.BigInteger(), nullable=True),
    sa.Column('disk_total_bytes', sa.BigInteger(), nullable=True),
    sa.Column('disk_read_bps', sa.BigInteger(), nullable=True),
    sa.Column('disk_write_bps', sa.BigInteger(), nullable=True),
    sa.Column('net_bytes_sent', sa.BigInteger(), nullable=True),
    sa.Column('net_bytes_recv', sa.BigInteger(), nullable=True),
    sa.Column('net_packets_sent', sa.BigInteger(), nullable=True),
    sa.Column('net_packets_recv', sa.BigInteger(), nullable=True),
    sa.Column('net_tx_bps', sa.BigInteger(), nullable=True),
    sa.Column('net_rx_bps', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['instance_id'], ['instance.id'], name=op.f('fk_metric_latest_instance_id_instance'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('instance_id', name=op.f('pk_metric_latest'))
    )
    op.create_table('metric_point',
    sa.Column('instance_id', sa.String(length=64), nullable=False),
    sa.Column('ts_ms', sa.BigInteger(), nullable=False),
    sa.Column('cpu_percent', sa.Float(), nullable=False),
    sa.Column('load_avg_1', sa.Float(), nullable=True),
    sa.Column('load_avg_5', sa.Float(), nullable=True),
    sa.Column('load_avg_15', sa.Float(), nullable=True),
    sa.Column('cpu_steal_percent', sa.Float(), nullable=True),
    sa.Column('core_count', sa.Integer(), nullable=True),
    sa.Column('mem_used_bytes', sa.BigInteger(), nullable=False),
    sa.Column('mem_total_bytes', sa.BigInteger(), nullable=False),
    sa.Column('mem_cached_bytes', sa.BigInteger(), nullable=True),
    sa.Column('swap_used_bytes', sa.BigInteger(), nullable=True),
    sa.Column('swap_total_bytes', sa.BigInteger(), nullable=True),
    sa.Column('disk_used_bytes', sa.BigInteger(), nullable=True),
    sa.Column('disk_total_bytes', sa.BigInteger(), nullable=True),
    sa.Column('disk_read_bps', sa.BigInteger(), nullable=True),
    sa.Column('disk_write_bps', sa.BigInteger(), nullable=True),
    sa.Column('net_bytes_sent', sa.BigInteger(), nullable=True),
    sa.Column('net_bytes_recv', sa.BigInteger(), nullable=True),
    sa.Column('net_packets_sent', sa.BigInteger(), nullable=True),
    sa.Column('net_packets_recv', sa.BigInteger(), nullable=True),
    sa.Column('net_tx_bps', sa.BigInteger(), nullable=True),
    sa.Column('net_rx_bps', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['instance_id'], ['instance.id'], name=op.f('fk_metric_point_instance_id_instance'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('instance_id', 'ts_ms', name=op.f('pk_metric_point'))
    )
    with op.batch_alter_table('metric_point', schema=None) as batch_op:
        batch_op.create_index('ix_metric_point_ts_ms', ['ts_ms'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('metric_point', schema=None) as batch_op:
        batch_op.drop_index('ix_metric_point_ts_ms')

    op.drop_table('metric_point')
    op.drop_table('metric_latest')
    op.drop_table('metric_dirty')
    with op.batch_alter_table('metric_1m', schema=None) as batch_op:
        batch_op.drop_index('ix_metric_1m_bucket_ms')

    op.drop_table('metric_1m')
    with op.batch_alter_table('metric_15m', schema=None) as batch_op:
        batch_op.drop_index('ix_metric_15m_bucket_ms')

    op.drop_table('metric_15m')
    with op.batch_alter_table('metric_1h', schema=None) as batch_op:
        batch_op.drop_index('ix_metric_1h_bucket_ms')

    op.drop_table('metric_1h')
    op.drop_table('rollup_state')
