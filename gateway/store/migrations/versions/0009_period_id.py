"""subscriptions.period_id: the payment behind the period a store shows

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

An App Store refund takes back one transaction's period. It was told from a later
payment only by a later end, so a resubscription to a shorter plan of the same group,
made before the refunded period would have ended, stayed revoked. The snapshot now
keeps the transactionId behind its period (``Snapshot.period_id``), and a revocation
the transaction it took back. Nullable, no default: adding it rewrites no rows. A
revocation recorded before this names no transaction and keeps the end rule: a
resubscription ending sooner than such a refunded period reads as revoked until the
refunded period's end passes.
"""
from alembic import op
import sqlalchemy as sa

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('subscriptions', sa.Column('period_id', sa.String(length=255), nullable=True))


def downgrade() -> None:
    op.drop_column('subscriptions', 'period_id')
