"""deleted_subscriptions: what an account deletion dealt with, and purchases made after it

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07

A purchase stored after an account deletion (a Stripe Checkout completed moments after it,
an App Store, Play or RevenueCat purchase under the deleted sub) granted nothing but was
neither cancelled nor reported, and went on billing. The deletion now records the
subscriptions it stopped or reported; one of the user's found live later and not among
them is a late purchase, which the worker cancels where the store lets it.

The users deleted before this migration have every subscription they hold recorded as
reported: the deletion dealt with those live then, and a late purchase stored before the
migration is not told from them.
"""
from alembic import op
import sqlalchemy as sa

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'deleted_subscriptions',
        sa.Column('source', sa.String(length=32), nullable=False),
        sa.Column('key', sa.String(length=255), nullable=False),
        sa.Column('user_sub', sa.String(length=255), nullable=False),
        sa.Column('product_id', sa.String(length=255), nullable=True),
        sa.Column('outcome', sa.String(length=32), nullable=False),
        sa.Column('found_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('source', 'key', name='pk_deleted_subscriptions'),
    )
    op.create_index('ix_deleted_subscriptions_user_sub', 'deleted_subscriptions', ['user_sub'])
    op.create_index('ix_deleted_subscriptions_due', 'deleted_subscriptions', ['next_attempt_at'],
                    postgresql_where=sa.text("outcome = 'pending'"), sqlite_where=sa.text("outcome = 'pending'"))
    op.execute(
        "INSERT INTO deleted_subscriptions (source, key, user_sub, product_id, outcome, found_at, attempts) "
        "SELECT s.source, s.key, s.user_sub, s.product_id, 'reported', d.deleted_at, 0 "
        "FROM subscriptions s JOIN deleted_users d ON d.user_sub = s.user_sub")


def downgrade() -> None:
    op.drop_index('ix_deleted_subscriptions_due', table_name='deleted_subscriptions')
    op.drop_index('ix_deleted_subscriptions_user_sub', table_name='deleted_subscriptions')
    op.drop_table('deleted_subscriptions')
