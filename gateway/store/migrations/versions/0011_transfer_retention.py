"""transfers: an index on as_of, for pruning the register by age

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

The retention (``gateway/jobs/retention.py``) now deletes the RevenueCat transfers stamped
before its cutoff, oldest first, a batch per transaction. Without an index each batch
would read the whole register. Built concurrently on PostgreSQL (``online.create_index``):
a plain CREATE INDEX blocked its writers, the TRANSFER deliveries, while it built (the
table is small, a row per account a transfer moved from: well under a second).
"""
from alembic import op

from gateway.store import online

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    online.create_index('ix_transfers_as_of', 'transfers', ['as_of'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_transfers_as_of', table_name='transfers')
