"""log entries and their substring-search index (10-core §11.3)

Revision ID: 0007_logs
Revises: 0006_deployments
Create Date: 2026-11-28 15:33:35.796055
"""
from alembic import op
import sqlalchemy as sa
import sindri_console.db.base
from sqlalchemy.dialects import postgresql

revision = '0007_logs'
down_revision = '0006_deployments'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('log_entry',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('instance_id', sa.String(length=64), nullable=False),
    sa.Column('level', sa.String(length=8), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('metadata', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('deployment_id', sa.String(length=128), nullable=True),
    sa.Column('path', sa.String(length=512), nullable=True),
    sa.Column('ts_ms', sa.BigInteger(), nullable=False),
    sa.Column('received_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['instance.id'], name=op.f('fk_log_entry_instance_id_instance'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_log_entry')),
    sa.UniqueConstraint('id', name=op.f('uq_log_entry_id')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('log_entry', schema=None) as batch_op:
        batch_op.create_index('ix_log_entry_deployment_id', ['deployment_id'], unique=False)
        batch_op.create_index('ix_log_entry_instance_id_ts_ms_seq', ['instance_id', sa.literal_column('ts_ms DESC'), sa.literal_column('seq DESC')], unique=False)
        batch_op.create_index('ix_log_entry_level_ts_ms', ['level', 'ts_ms'], unique=False)
        batch_op.create_index('ix_log_entry_ts_ms_seq', [sa.literal_column('ts_ms DESC'), sa.literal_column('seq DESC')], unique=False)

    # the search index exists on one side only (10-core §11.3)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute("CREATE INDEX ix_log_entry_message_trgm ON log_entry USING gin (message gin_trgm_ops)")
    else:
        op.execute(
            "CREATE VIRTUAL TABLE log_entry_fts USING fts5("
            "message, content='log_entry', content_rowid='seq', tokenize='trigram')"
        )
        op.execute(
            "CREATE TRIGGER log_entry_fts_ai AFTER INSERT ON log_entry BEGIN "
            "INSERT INTO log_entry_fts(rowid, message) VALUES (new.seq, new.message); END"
        )
        op.execute(
            "CREATE TRIGGER log_entry_fts_ad AFTER DELETE ON log_entry BEGIN "
            "INSERT INTO log_entry_fts(log_entry_fts, rowid, message) VALUES ('delete', old.seq, old.message); END"
        )
        op.execute(
            "CREATE TRIGGER log_entry_fts_au AFTER UPDATE OF message ON log_entry BEGIN "
            "INSERT INTO log_entry_fts(log_entry_fts, rowid, message) VALUES ('delete', old.seq, old.message); "
            "INSERT INTO log_entry_fts(rowid, message) VALUES (new.seq, new.message); END"
        )



def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_log_entry_message_trgm")
    else:
        for trigger in ("log_entry_fts_ai", "log_entry_fts_ad", "log_entry_fts_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS log_entry_fts")
    with op.batch_alter_table('log_entry', schema=None) as batch_op:
        batch_op.drop_index('ix_log_entry_ts_ms_seq')
        batch_op.drop_index('ix_log_entry_level_ts_ms')
        batch_op.drop_index('ix_log_entry_instance_id_ts_ms_seq')
        batch_op.drop_index('ix_log_entry_deployment_id')

    op.drop_table('log_entry')
