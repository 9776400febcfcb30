"""deleted_accounts: the store accounts a deleted user was linked to

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07

An account deletion erased the user's identity links, so a later delivery that named only
the user's store account (Stripe's customer.deleted, sent when the app deletes the
customer) could no longer be told for the deleted user's, and kept its email and name in
the event log. The deletion now keeps the accounts, opaque ids, beside the tombstone. A new
table: users deleted before it have no accounts kept.
"""
from alembic import op
import sqlalchemy as sa

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'deleted_accounts',
        sa.Column('source', sa.String(length=32), nullable=False),
        sa.Column('account', sa.String(length=255), nullable=False),
        sa.Column('user_sub', sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint('source', 'account', name='pk_deleted_accounts'),
    )


def downgrade() -> None:
    op.drop_table('deleted_accounts')
