"""feed_retention: how far the feed was pruned; an index of the webhooks still owed by user

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07

FEED_RETENTION_DAYS deletes old entitlement events (``gateway/store/retention.py``). The
highest position deleted is kept in a one-row table of its own, so ``GET /v1/events`` can
tell a cursor that missed events (410 ``cursor_expired``) without the feed's clock, whose
row lock every writer of events takes. A user's events are kept from the first one an
outgoing webhook still owes them: the partial index finds it by user, among the rows not
delivered only, built concurrently on PostgreSQL (``online.create_index``): a plain CREATE
INDEX blocks the worker's writes to webhook_deliveries while it builds.
"""
from alembic import op
import sqlalchemy as sa

from gateway.store import online

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

INDEX, TABLE = 'ix_webhook_deliveries_undelivered_user_sub', 'webhook_deliveries'
UNDELIVERED = sa.text("status <> 'delivered'")


def upgrade() -> None:
    op.create_table(
        'feed_retention',
        sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('pruned_through', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id', name='pk_feed_retention'),
    )
    online.create_index(INDEX, TABLE, ['user_sub', 'position'], unique=False,
                        postgresql_where=UNDELIVERED, sqlite_where=UNDELIVERED)


def downgrade() -> None:
    op.drop_index(INDEX, table_name=TABLE)
    op.drop_table('feed_retention')
