"""The entitlement feed, outgoing webhooks and deleted users

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05

The feed starts empty at position 0, and entitlements that lapsed before this revision
are not reported expired (``expiries_through`` starts now): the feed tells of changes
from the day it exists.
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), 'postgresql')
Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    _feed()
    _webhooks()
    op.create_table('deleted_users',
    sa.Column('user_sub', sa.String(length=255), nullable=False),
    sa.Column('deleted_at', Time, nullable=False),
    sa.Column('report', Json, nullable=False),
    sa.PrimaryKeyConstraint('user_sub', name=op.f('pk_deleted_users'))
    )


def _feed() -> None:
    op.create_table('entitlement_events',
    sa.Column('position', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('event_id', sa.String(length=40), nullable=False),
    sa.Column('type', sa.String(length=40), nullable=False),
    sa.Column('user_sub', sa.String(length=255), nullable=False),
    sa.Column('entitlement', sa.String(length=128), nullable=True),
    sa.Column('before', Json, nullable=True),
    sa.Column('after', Json, nullable=True),
    sa.Column('cause', Json, nullable=False),
    sa.Column('occurred_at', Time, nullable=False),
    sa.PrimaryKeyConstraint('position', name=op.f('pk_entitlement_events')),
    sa.UniqueConstraint('event_id', name=op.f('uq_entitlement_events_event_id'))
    )
    op.create_index('ix_entitlement_events_user_sub_position', 'entitlement_events', ['user_sub', 'position'])
    clock = op.create_table('feed_clock',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('position', sa.BigInteger(), nullable=False),
    sa.Column('expiries_through', Time, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_feed_clock'))
    )
    op.execute(clock.insert().values(id=1, position=0, expiries_through=sa.func.current_timestamp()))
    op.create_table('feed_cursors',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('position', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', Time, nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_feed_cursors'))
    )


def _webhooks() -> None:
    op.create_table('webhook_endpoints',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('secrets', Json, nullable=False),
    sa.Column('event_types', Json, nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('origin', sa.String(length=16), nullable=False),
    sa.Column('position', sa.BigInteger(), nullable=False),
    sa.Column('created_at', Time, nullable=False),
    sa.Column('updated_at', Time, nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_webhook_endpoints'))
    )
    op.create_table('webhook_deliveries',
    sa.Column('endpoint', sa.String(length=64), nullable=False),
    sa.Column('position', sa.BigInteger(), nullable=False),
    sa.Column('user_sub', sa.String(length=255), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', Time, nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', Time, nullable=False),
    sa.Column('queued_at', Time, nullable=False),
    sa.Column('delivered_at', Time, nullable=True),
    sa.PrimaryKeyConstraint('endpoint', 'position', name=op.f('pk_webhook_deliveries'))
    )
    op.create_index('ix_webhook_deliveries_endpoint_user_sub', 'webhook_deliveries',
                    ['endpoint', 'user_sub', 'position'])
    op.create_index('ix_webhook_deliveries_status_next_attempt_at', 'webhook_deliveries',
                    ['status', 'next_attempt_at'])


def downgrade() -> None:
    for table in ('deleted_users', 'webhook_deliveries', 'webhook_endpoints', 'feed_cursors', 'feed_clock',
                  'entitlement_events'):
        op.drop_table(table)
