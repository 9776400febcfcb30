"""webhook_deliveries: an index on delivered_at, for pruning delivered rows by age

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

The event log's retention (``gateway/jobs/retention.py``) deletes outgoing deliveries
delivered before a cutoff, oldest first, a batch per transaction. Without an index each
batch would read every delivered row. Partial: only delivered rows have a time (pending
and failed ones are NULL), so fanning out a new event writes nothing to it. Events need
no index of their own: ``ix_events_received_at`` serves their pruning.

Built concurrently on PostgreSQL (``online.create_index``): a plain CREATE INDEX
blocked writes to webhook_deliveries (the worker's, never a webhook's or a read's) while
it built, 1.9 s for a million rows on a busy 2-core machine.
"""
from alembic import op
import sqlalchemy as sa

from gateway.store import online

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

INDEX, TABLE = 'ix_webhook_deliveries_delivered_at', 'webhook_deliveries'
DELIVERED = sa.text('delivered_at IS NOT NULL')


def upgrade() -> None:
    online.create_index(INDEX, TABLE, ['delivered_at'], unique=False,
                        postgresql_where=DELIVERED, sqlite_where=DELIVERED)


def downgrade() -> None:
    op.drop_index(INDEX, table_name=TABLE)
