"""subscriptions.first_as_of: the stamp of the oldest snapshot seen of a subscription

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

A RevenueCat transfer moved every purchase its ids held, whenever the purchase was seen:
one bought under an anonymous id after a transfer from that id, whose events name no
user who could claim it back, went to the transfer's user. A transfer now moves only a
purchase seen no later than its stamp (``domain.changes.transferred``), which needs the
oldest stamp seen of each subscription. Nullable, no default: adding it rewrites no
rows. A row written before this is of unknown age and moves as before.
"""
from alembic import op
import sqlalchemy as sa

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('subscriptions', sa.Column('first_as_of', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column('subscriptions', 'first_as_of')
