"""subscriptions.entitlement_ends: an entitlement that ends before its subscription

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

A Play purchase with add-ons has one line item per product, each with its own
``expiryTime``. The snapshot kept one end, the latest item's, so an add-on that ends
before its base plan granted until the next read of the purchase (a notification,
reconcile). The snapshot now keeps, for each entitlement that ends before ``expires_at``,
its own end (``Snapshot.entitlement_ends``), as ``{entitlement: end}``. Nullable, no
default: adding it rewrites no rows. A row written before this keeps one end until the
purchase is read again.
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
        'entitlement_ends', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'),
        nullable=True))


def downgrade() -> None:
    op.drop_column('subscriptions', 'entitlement_ends')
