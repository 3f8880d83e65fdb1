"""core schema

Revision ID: 0001_core
Revises: 
Create Date: 2026-11-28 15:17:13.705076
"""
from alembic import op
import sqlalchemy as sa
import sindri_console.db.base
from sqlalchemy.dialects import postgresql

revision = '0001_core'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_log',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('ts_ms', sa.BigInteger(), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('resource', sa.String(length=64), nullable=False),
    sa.Column('resource_id', sa.String(length=128), nullable=True),
    sa.Column('user_id', sa.String(length=64), nullable=True),
    sa.Column('user_email', sa.String(length=254), nullable=True),
    sa.Column('api_key_id', sa.String(length=64), nullable=True),
    sa.Column('actor_kind', sa.String(length=8), nullable=False),
    sa.Column('team_id', sa.String(length=64), nullable=True),
    sa.Column('ip_address', sa.String(length=64), nullable=True),
    sa.Column('user_agent', sa.String(length=256), nullable=True),
    sa.Column('request_id', sa.String(length=128), nullable=True),
    sa.Column('metadata', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index('ix_audit_log_action_ts_ms', ['action', 'ts_ms'], unique=False)
        batch_op.create_index('ix_audit_log_resource_resource_id', ['resource', 'resource_id'], unique=False)
        batch_op.create_index('ix_audit_log_team_id_ts_ms', ['team_id', 'ts_ms'], unique=False)
        batch_op.create_index('ix_audit_log_ts_ms_id', ['ts_ms', 'id'], unique=False)
        batch_op.create_index('ix_audit_log_user_id_ts_ms', ['user_id', 'ts_ms'], unique=False)

    op.create_table('lease',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('holder', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_lease'))
    )
    op.create_table('replica',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('started_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('hostname', sa.String(length=253), nullable=True),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_replica'))
    )
    op.create_table('team',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('description', sa.String(length=512), nullable=True),
    sa.Column('created_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_team'))
    )
    op.create_table('user_account',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=True),
    sa.Column('role', sa.String(length=16), server_default='VIEWER', nullable=False),
    sa.Column('is_active', sa.Boolean(), server_default=sa.text('(true)'), nullable=False),
    sa.Column('created_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=True),
    sa.Column('last_seen_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_account'))
    )
    with op.batch_alter_table('user_account', schema=None) as batch_op:
        batch_op.create_index('ix_user_account_created_at_id', ['created_at', 'id'], unique=False)
        batch_op.create_index('ix_user_account_is_active', ['is_active'], unique=False)
        batch_op.create_index('ix_user_account_role', ['role'], unique=False)

    op.create_table('instance',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('provider', sa.String(length=32), nullable=True),
    sa.Column('region', sa.String(length=64), nullable=True),
    sa.Column('distro', sa.String(length=16), nullable=True),
    sa.Column('extensions', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('config_hash', sa.String(length=64), nullable=True),
    sa.Column('ssh_endpoint', sa.String(length=256), nullable=True),
    sa.Column('docker_host', sa.String(length=512), nullable=True),
    sa.Column('size_id', sa.String(length=64), nullable=True),
    sa.Column('disk_gb', sa.Integer(), nullable=True),
    sa.Column('tags', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('team_id', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('status_reason', sa.String(length=512), nullable=True),
    sa.Column('status_changed_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('geo_lat', sa.Float(), nullable=True),
    sa.Column('geo_lon', sa.Float(), nullable=True),
    sa.Column('geo_label', sa.String(length=128), nullable=True),
    sa.Column('geo_source', sa.String(length=16), nullable=True),
    sa.Column('sindri_version', sa.String(length=64), nullable=True),
    sa.Column('active_job_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('removed_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=True),
    sa.Column('created_by', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['team_id'], ['team.id'], name=op.f('fk_instance_team_id_team'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_instance'))
    )
    with op.batch_alter_table('instance', schema=None) as batch_op:
        batch_op.create_index('ix_instance_created_at_id', ['created_at', 'id'], unique=False)
        batch_op.create_index('ix_instance_geo_lat_geo_lon', ['geo_lat', 'geo_lon'], unique=False)
        batch_op.create_index('ix_instance_provider', ['provider'], unique=False)
        batch_op.create_index('ix_instance_status', ['status'], unique=False)
        batch_op.create_index('ix_instance_team_id', ['team_id'], unique=False)
        batch_op.create_index('uq_instance_live_name', ['name'], unique=True, sqlite_where=sa.text("status NOT IN ('DESTROYED', 'DEREGISTERED')"), postgresql_where=sa.text("status NOT IN ('DESTROYED', 'DEREGISTERED')"))

    op.create_table('team_member',
    sa.Column('team_id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=True),
    sa.Column('added_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('added_by', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['team_id'], ['team.id'], name=op.f('fk_team_member_team_id_team'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_team_member_user_id_user_account'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('team_id', 'user_id', name=op.f('pk_team_member'))
    )
    with op.batch_alter_table('team_member', schema=None) as batch_op:
        batch_op.create_index('ix_team_member_user_id', ['user_id'], unique=False)

    op.create_table('agent_connection',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('instance_id', sa.String(length=64), nullable=False),
    sa.Column('replica_id', sa.String(length=64), nullable=False),
    sa.Column('credential', sa.String(length=16), nullable=False),
    sa.Column('api_key_id', sa.String(length=64), nullable=True),
    sa.Column('dialect', sa.String(length=16), nullable=True),
    sa.Column('agent_version', sa.String(length=64), nullable=True),
    sa.Column('protocol_version', sa.String(length=16), nullable=True),
    sa.Column('capabilities', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('remote_address', sa.String(length=64), nullable=True),
    sa.Column('user_agent', sa.String(length=256), nullable=True),
    sa.Column('connected_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('identified_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('disconnected_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=True),
    sa.Column('close_code', sa.Integer(), nullable=True),
    sa.Column('close_reason', sa.String(length=123), nullable=True),
    sa.Column('frames_in', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('frames_out', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('bytes_in', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('bytes_out', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('identity_mismatches', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['instance.id'], name=op.f('fk_agent_connection_instance_id_instance'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agent_connection'))
    )
    with op.batch_alter_table('agent_connection', schema=None) as batch_op:
        batch_op.create_index('ix_agent_connection_instance_id_connected_at', ['instance_id', 'connected_at'], unique=False)
        batch_op.create_index('ix_agent_connection_open_replica', ['replica_id'], unique=False, sqlite_where=sa.text('disconnected_at IS NULL'), postgresql_where=sa.text('disconnected_at IS NULL'))

    op.create_table('agent_state',
    sa.Column('instance_id', sa.String(length=64), nullable=False),
    sa.Column('agent_instance_id', sa.String(length=128), nullable=True),
    sa.Column('dialect', sa.String(length=16), nullable=True),
    sa.Column('agent_name', sa.String(length=64), nullable=True),
    sa.Column('agent_version', sa.String(length=64), nullable=True),
    sa.Column('protocol_version', sa.String(length=16), nullable=True),
    sa.Column('capabilities', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('hostname', sa.String(length=253), nullable=True),
    sa.Column('os', sa.String(length=32), nullable=True),
    sa.Column('arch', sa.String(length=32), nullable=True),
    sa.Column('intervals', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('connected', sa.Boolean(), server_default=sa.text('(false)'), nullable=False),
    sa.Column('connection_id', sa.String(length=64), nullable=True),
    sa.Column('replica_id', sa.String(length=64), nullable=True),
    sa.Column('connected_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=True),
    sa.Column('disconnected_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=True),
    sa.Column('last_seen_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=True),
    sa.Column('last_heartbeat_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=True),
    sa.Column('heartbeat_interval_seconds', sa.Float(), nullable=True),
    sa.Column('heartbeat_deadline_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=True),
    sa.Column('heartbeat_lost', sa.Boolean(), server_default=sa.text('(false)'), nullable=False),
    sa.Column('heartbeat_lost_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=True),
    sa.Column('uptime_seconds', sa.BigInteger(), nullable=True),
    sa.Column('clock_skew_ms', sa.BigInteger(), nullable=True),
    sa.Column('last_registered_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=True),
    sa.Column('last_registration_agent_time', sindri_console.db.base.UtcDateTime(timezone=True), nullable=True),
    sa.Column('frames_dropped', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('updated_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['instance.id'], name=op.f('fk_agent_state_instance_id_instance'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('instance_id', name=op.f('pk_agent_state'))
    )
    with op.batch_alter_table('agent_state', schema=None) as batch_op:
        batch_op.create_index('ix_agent_state_agent_instance_id', ['agent_instance_id'], unique=False)
        batch_op.create_index('ix_agent_state_connected_replica_id', ['connected', 'replica_id'], unique=False)
        batch_op.create_index('ix_agent_state_heartbeat_lost_heartbeat_deadline_at', ['heartbeat_lost', 'heartbeat_deadline_at'], unique=False)

    op.create_table('api_key',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('key_prefix', sa.String(length=16), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=True),
    sa.Column('instance_id', sa.String(length=64), nullable=True),
    sa.Column('role', sa.String(length=16), nullable=True),
    sa.Column('created_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=True),
    sa.Column('expires_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=True),
    sa.Column('last_used_ip', sa.String(length=64), nullable=True),
    sa.Column('revoked_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=True),
    sa.Column('revoked_by', sa.String(length=64), nullable=True),
    sa.Column('revoke_reason', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['instance_id'], ['instance.id'], name=op.f('fk_api_key_instance_id_instance'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_api_key_user_id_user_account'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_key'))
    )
    with op.batch_alter_table('api_key', schema=None) as batch_op:
        batch_op.create_index('ix_api_key_created_at_id', ['created_at', 'id'], unique=False)
        batch_op.create_index('ix_api_key_instance_id_revoked_at', ['instance_id', 'revoked_at'], unique=False)
        batch_op.create_index('ix_api_key_user_id_revoked_at', ['user_id', 'revoked_at'], unique=False)
        batch_op.create_index('uq_api_key_key_hash', ['key_hash'], unique=True)

    op.create_table('heartbeat',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('instance_id', sa.String(length=64), nullable=False),
    sa.Column('timestamp', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('received_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('agent_uptime_seconds', sa.BigInteger(), nullable=True),
    sa.Column('system_uptime_seconds', sa.BigInteger(), nullable=True),
    sa.Column('cpu_percent', sa.Float(), nullable=True),
    sa.Column('memory_used_bytes', sa.BigInteger(), nullable=True),
    sa.Column('memory_total_bytes', sa.BigInteger(), nullable=True),
    sa.Column('disk_used_bytes', sa.BigInteger(), nullable=True),
    sa.Column('disk_total_bytes', sa.BigInteger(), nullable=True),
    sa.Column('load_avg_1', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['instance_id'], ['instance.id'], name=op.f('fk_heartbeat_instance_id_instance'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_heartbeat'))
    )
    with op.batch_alter_table('heartbeat', schema=None) as batch_op:
        batch_op.create_index('ix_heartbeat_instance_id_timestamp', ['instance_id', 'timestamp'], unique=False)
        batch_op.create_index('ix_heartbeat_received_at', ['received_at'], unique=False)

    op.create_table('instance_event',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('instance_id', sa.String(length=64), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('ts_ms', sa.BigInteger(), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('metadata', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('actor_kind', sa.String(length=8), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=True),
    sa.Column('job_id', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['instance_id'], ['instance.id'], name=op.f('fk_instance_event_instance_id_instance'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_instance_event'))
    )
    with op.batch_alter_table('instance_event', schema=None) as batch_op:
        batch_op.create_index('ix_instance_event_instance_id_ts_ms_id', ['instance_id', 'ts_ms', 'id'], unique=False)
        batch_op.create_index('ix_instance_event_type_ts_ms', ['type', 'ts_ms'], unique=False)

    op.create_table('instance_status_history',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('instance_id', sa.String(length=64), nullable=False),
    sa.Column('from_status', sa.String(length=16), nullable=True),
    sa.Column('to_status', sa.String(length=16), nullable=False),
    sa.Column('changed_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.String(length=512), nullable=True),
    sa.ForeignKeyConstraint(['instance_id'], ['instance.id'], name=op.f('fk_instance_status_history_instance_id_instance'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_instance_status_history'))
    )
    with op.batch_alter_table('instance_status_history', schema=None) as batch_op:
        batch_op.create_index('ix_instance_status_history_instance_id_changed_at', ['instance_id', 'changed_at'], unique=False)
    op.create_table('system_state',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('value', sa.String(length=256), nullable=False),
    sa.Column('updated_at', sindri_console.db.base.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_system_state'))
    )
    op.create_index('uq_user_account_email_lower', 'user_account', [sa.text('lower(email)')], unique=True)
    op.create_index('uq_team_name_lower', 'team', [sa.text('lower(name)')], unique=True)


def downgrade() -> None:
    op.drop_table('system_state')
    op.drop_index('uq_team_name_lower', table_name='team')
    op.drop_index('uq_user_account_email_lower', table_name='user_account')
    with op.batch_alter_table('instance_status_history', schema=None) as batch_op:
        batch_op.drop_index('ix_instance_status_history_instance_id_changed_at')

    op.drop_table('instance_status_history')
    with op.batch_alter_table('instance_event', schema=None) as batch_op:
        batch_op.drop_index('ix_instance_event_type_ts_ms')
        batch_op.drop_index('ix_instance_event_instance_id_ts_ms_id')

    op.drop_table('instance_event')
    with op.batch_alter_table('heartbeat', schema=None) as batch_op:
        batch_op.drop_index('ix_heartbeat_received_at')
        batch_op.drop_index('ix_heartbeat_instance_id_timestamp')

    op.drop_table('heartbeat')
    with op.batch_alter_table('api_key', schema=None) as batch_op:
        batch_op.drop_index('uq_api_key_key_hash')
        batch_op.drop_index('ix_api_key_user_id_revoked_at')
        batch_op.drop_index('ix_api_key_instance_id_revoked_at')
        batch_op.drop_index('ix_api_key_created_at_id')

    op.drop_table('api_key')
    with op.batch_alter_table('agent_state', schema=None) as batch_op:
        batch_op.drop_index('ix_agent_state_heartbeat_lost_heartbeat_deadline_at')
        batch_op.drop_index('ix_agent_state_connected_replica_id')
        batch_op.drop_index('ix_agent_state_agent_instance_id')

    op.drop_table('agent_state')
    with op.batch_alter_table('agent_connection', schema=None) as batch_op:
        batch_op.drop_index('ix_agent_connection_open_replica', sqlite_where=sa.text('disconnected_at IS NULL'), postgresql_where=sa.text('disconnected_at IS NULL'))
        batch_op.drop_index('ix_agent_connection_instance_id_connected_at')

    op.drop_table('agent_connection')
    with op.batch_alter_table('team_member', schema=None) as batch_op:
        batch_op.drop_index('ix_team_member_user_id')

    op.drop_table('team_member')
    with op.batch_alter_table('instance', schema=None) as batch_op:
        batch_op.drop_index('uq_instance_live_name', sqlite_where=sa.text("status NOT IN ('DESTROYED', 'DEREGISTERED')"), postgresql_where=sa.text("status NOT IN ('DESTROYED', 'DEREGISTERED')"))
        batch_op.drop_index('ix_instance_team_id')
        batch_op.drop_index('ix_instance_status')
        batch_op.drop_index('ix_instance_provider')
        batch_op.drop_index('ix_instance_geo_lat_geo_lon')
        batch_op.drop_index('ix_instance_created_at_id')

    op.drop_table('instance')
    with op.batch_alter_table('user_account', schema=None) as batch_op:
        batch_op.drop_index('ix_user_account_role')
        batch_op.drop_index('ix_user_account_is_active')
        batch_op.drop_index('ix_user_account_created_at_id')

    op.drop_table('user_account')
    op.drop_table('team')
    op.drop_table('replica')
    op.drop_table('lease')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_log_user_id_ts_ms')
        batch_op.drop_index('ix_audit_log_ts_ms_id')
        batch_op.drop_index('ix_audit_log_team_id_ts_ms')
        batch_op.drop_index('ix_audit_log_resource_resource_id')
        batch_op.drop_index('ix_audit_log_action_ts_ms')

    op.drop_table('audit_log')
