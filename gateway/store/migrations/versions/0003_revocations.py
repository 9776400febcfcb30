"""subscriptions.revocations: what refunds and chargebacks took back, kept apart from
the newest snapshot

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05

Before this revision a revocation was written into the snapshot itself (status
``revoked``). Such rows keep that status, and their revocation is carried over into the
new column, so that a later view of the same period still does not give access back.
"""
from datetime import timezone

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

TABLE = 'subscriptions'
COLUMN = 'revocations'


def upgrade() -> None:
    columns = {column['name'] for column in sa.inspect(op.get_bind()).get_columns(TABLE)}
    if COLUMN not in columns:
        op.add_column(TABLE, sa.Column(COLUMN, sa.JSON().with_variant(JSONB(), 'postgresql'), nullable=True))
    table = sa.table(TABLE, sa.column('source'), sa.column('key'), sa.column('status'),
                     sa.column('raw_status'), sa.column('expires_at', sa.DateTime(timezone=True)),
                     sa.column(COLUMN, sa.JSON().with_variant(JSONB(), 'postgresql')))
    bind = op.get_bind()
    rows = bind.execute(sa.select(table.c.source, table.c.key, table.c.raw_status, table.c.expires_at)
                        .where(table.c.status == 'revoked', table.c[COLUMN].is_(None))).all()
    for source, key, raw_status, expires_at in rows:
        reason = (raw_status or '').rpartition(':')[2] or 'revoked'
        if expires_at is not None and expires_at.tzinfo is None:  # SQLite keeps no zone; stored as UTC
            expires_at = expires_at.replace(tzinfo=__import__('datetime').timezone.utc)
        taken = [[f'{reason}:before-0003', expires_at.isoformat() if expires_at else None]]
        bind.execute(sa.update(table).where(table.c.source == source, table.c.key == key)
                     .values({COLUMN: {'taken': taken, 'given_back': []}}))


def downgrade() -> None:
    op.drop_column(TABLE, COLUMN)
