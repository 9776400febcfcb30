"""checkout_sessions: the Checkout Sessions handed to each user, for the deletion to expire

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07

The deletion expired the open sessions it listed at Stripe before it recorded the
tombstone; a checkout that opened its session after that list handed the deleted user a
payable session, and one that passed its check before the tombstone opened a session after
it. A session is now written here under the user's lock, against the tombstone, before its
URL is handed out, and the deletion holds what it expired against these rows under the
same lock (``gateway.checkout``, ``accounts.erase``). A new table: nothing to rewrite, and
the previous release, which neither reads nor writes it, runs beside it.
"""
from alembic import op
import sqlalchemy as sa

revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'checkout_sessions',
        sa.Column('session_id', sa.String(length=255), nullable=False),
        sa.Column('user_sub', sa.String(length=255), nullable=False),
        sa.Column('customer', sa.String(length=255), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('session_id', name='pk_checkout_sessions'),
    )
    op.create_index('ix_checkout_sessions_user_sub', 'checkout_sessions', ['user_sub'])
    op.create_index('ix_checkout_sessions_created_at', 'checkout_sessions', ['created_at'])


def downgrade() -> None:
    op.drop_index('ix_checkout_sessions_created_at', table_name='checkout_sessions')
    op.drop_index('ix_checkout_sessions_user_sub', table_name='checkout_sessions')
    op.drop_table('checkout_sessions')
