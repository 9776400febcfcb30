"""subscriptions.entitlement_terms: an entitlement whose product, end or renewal is its own

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

A Play purchase with add-ons has one line item per product, each with its own
``expiryTime`` and renewal. The snapshot kept one end and one renewal, the purchase's, so
an add-on that ends before its base plan granted until the next read of the purchase (a
notification, reconcile), and a cancelled add-on read ``will_renew: true``. The snapshot
now keeps, for each entitlement whose terms are not the purchase's, its own
(``Snapshot.entitlement_terms``), as ``{entitlement: {"end", "renews", "product"}}``.
Nullable, no default: adding it rewrites no rows. A row written before this keeps the
purchase's terms until the purchase is read again.
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('subscriptions', sa.Column(
        'entitlement_terms', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'),
        nullable=True))


def downgrade() -> None:
    op.drop_column('subscriptions', 'entitlement_terms')
