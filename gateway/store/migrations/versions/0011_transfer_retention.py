"""transfers: an index on as_of, for pruning the register by age

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

The retention (``gateway/jobs/retention.py``) now deletes the RevenueCat transfers stamped
before its cutoff, oldest first, a batch per transaction. Without an index each batch
would read the whole register. The table is small (a row per account a transfer moved
from): a plain CREATE INDEX blocks its writers, the TRANSFER deliveries, for as long as
the build lasts, well under a second.
"""
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_transfers_as_of', 'transfers', ['as_of'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_transfers_as_of', table_name='transfers')
