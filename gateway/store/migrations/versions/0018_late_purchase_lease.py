"""deleted_subscriptions.leased_until: who is stopping a late purchase right now

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07

A late purchase is stopped by the worker, or by the deletion asked again (``DELETE /v1/me``),
outside any transaction. The worker's lease was its ``next_attempt_at`` moved on, which the
deletion could not tell from a backoff: asked again while the worker's cancel was in
flight, it cancelled the same subscription at Stripe a second time. The lease is a column
of its own now, taken by both under the row's lock. Nullable (no lease): an expand step,
no rewrite, and the previous release, which neither reads nor writes it, runs beside it.
"""
from alembic import op
import sqlalchemy as sa

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('deleted_subscriptions', sa.Column('leased_until', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column('deleted_subscriptions', 'leased_until')
