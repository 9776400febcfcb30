"""Indexes for a million users: the expiry sweep, reconcile's due query, the outbox claim

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05

Found by ``make bench-scale`` (EXPLAIN of every hot statement on 1,000,000 users,
1,200,000 subscriptions and 10,000,000 events; bench/README.md):

- ``entitlements.expires_at``: the expiry sweep, which every worker runs every second,
  read the window of lapsing grants with a sequential scan of the whole table (100-365 ms
  per million users); with the index, 3.2 ms. Plain, not partial on the granting
  statuses: those are bound parameters, which a generic plan cannot match to a predicate.
- ``subscriptions.status``: reconcile's due query (unsettled rows: no user, or pending)
  scanned the table; with it the plan is a BitmapOr of three indexes (202 -> 50-64 ms).
- ``webhook_deliveries (endpoint, user_sub, position) WHERE status <> 'delivered'``: the
  claim's "an earlier delivery to this endpoint for this user is not delivered yet" check
  walked every delivered row of the user; with a backlog of 16,892 pending deliveries the
  claim took 618 ms, with the index 55 ms. Partial: it holds only the rows still to send.

A plain CREATE INDEX blocks writes to its table while it builds (0.4 s per million
entitlements measured); reads go on.
"""
from alembic import op
import sqlalchemy as sa

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

UNDELIVERED = sa.text("status <> 'delivered'")


def upgrade() -> None:
    op.create_index('ix_entitlements_expires_at', 'entitlements', ['expires_at'], unique=False)
    op.create_index('ix_subscriptions_status', 'subscriptions', ['status'], unique=False)
    op.create_index('ix_webhook_deliveries_undelivered', 'webhook_deliveries', ['endpoint', 'user_sub', 'position'],
                    unique=False, postgresql_where=UNDELIVERED, sqlite_where=UNDELIVERED)


def downgrade() -> None:
    op.drop_index('ix_webhook_deliveries_undelivered', table_name='webhook_deliveries')
    op.drop_index('ix_subscriptions_status', table_name='subscriptions')
    op.drop_index('ix_entitlements_expires_at', table_name='entitlements')
