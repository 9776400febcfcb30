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

Built concurrently on PostgreSQL (``online.create_index``): a plain CREATE INDEX blocked
writes to its table while it built, and every delivery writes subscriptions and
entitlements; reads went on. On 3,000,000 entitlements, with a writer inserting every
10 ms on a loaded 2-core machine: plain, the upgrade took 4.0-4.2 s and the writer waited
3.8-4.1 s; concurrently, 8.2-9.4 s, and no write waited more than 0.11 s.
"""
from alembic import op
import sqlalchemy as sa

from gateway.store import online

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

UNDELIVERED = sa.text("status <> 'delivered'")


def upgrade() -> None:
    online.create_index('ix_entitlements_expires_at', 'entitlements', ['expires_at'], unique=False)
    online.create_index('ix_subscriptions_status', 'subscriptions', ['status'], unique=False)
    online.create_index('ix_webhook_deliveries_undelivered', 'webhook_deliveries',
                        ['endpoint', 'user_sub', 'position'], unique=False,
                        postgresql_where=UNDELIVERED, sqlite_where=UNDELIVERED)


def downgrade() -> None:
    op.drop_index('ix_webhook_deliveries_undelivered', table_name='webhook_deliveries')
    op.drop_index('ix_subscriptions_status', table_name='subscriptions')
    op.drop_index('ix_entitlements_expires_at', table_name='entitlements')
