"""subscriptions.store, transfers.store and transfers.environment: what a RevenueCat transfer moves

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07

A RevenueCat TRANSFER moved every purchase its ids held. A restore moves what the store
account on the device bought, and the event names that ``store`` and ``environment``: a
Play Store or web purchase of the old user, or a sandbox one, stayed theirs at RevenueCat
and went to the new user here. A transfer now moves only the purchases of its store and
environment (``domain.changes.Transfer.moves``), which needs each purchase's store and each
transfer's. Nullable, no default: an expand step, no rewrite; a row written before (or by
the previous release, which neither reads nor writes them) matches any, and moves as before.
"""
from alembic import op
import sqlalchemy as sa

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('subscriptions', sa.Column('store', sa.String(32), nullable=True))
    op.add_column('transfers', sa.Column('store', sa.String(32), nullable=True))
    op.add_column('transfers', sa.Column('environment', sa.String(32), nullable=True))


def downgrade() -> None:
    op.drop_column('transfers', 'environment')
    op.drop_column('transfers', 'store')
    op.drop_column('subscriptions', 'store')
