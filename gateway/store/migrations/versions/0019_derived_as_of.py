"""subscriptions.derived_as_of: the stamp the row's period_id and entitlement_terms describe

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07

During a rolling upgrade the previous release goes on writing subscriptions. A release
from before 0009 (``period_id``) or 0012 (``entitlement_terms``) writes every column it
knows and leaves those two as the new release set them: describing an older snapshot than
the row now holds. The next re-derivation of that user's entitlements then judged the
newer snapshot by the older one's add-on terms (a paid add-on lapsing at the old end), and
matched a refund against the older payment. The new release now writes the snapshot's
``as_of`` here beside them; a row whose ``as_of`` is not this one was written since by a
release that knew neither, and both are read as unknown (``gateway.store.rows``) until the
purchase is read again. Nullable, no default: adding it rewrites no rows; NULL (written
before this) keeps both as they are.
"""
from alembic import op
import sqlalchemy as sa

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('subscriptions', sa.Column('derived_as_of', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column('subscriptions', 'derived_as_of')
