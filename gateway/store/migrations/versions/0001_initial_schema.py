"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-22
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    _entitlements()
    _events()
    _identities()
    _subscriptions()


def _entitlements() -> None:
    op.create_table('entitlements',
    sa.Column('user_sub', sa.String(length=255), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('will_renew', sa.Boolean(), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('product_id', sa.String(length=255), nullable=True),
    sa.Column('subscription_key', sa.String(length=255), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('user_sub', 'name', name=op.f('pk_entitlements'))
    )


def _events() -> None:
    op.create_table('events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('event_id', sa.String(length=255), nullable=False),
    sa.Column('event_type', sa.String(length=128), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('data', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_events')),
    sa.UniqueConstraint('source', 'event_id', name='uq_events_source_event_id')
    )
    op.create_index('ix_events_received_at', 'events', ['received_at'], unique=False)
    op.create_index('ix_events_status_next_attempt_at', 'events', ['status', 'next_attempt_at'], unique=False)


def _identities() -> None:
    op.create_table('identities',
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('account', sa.String(length=255), nullable=False),
    sa.Column('user_sub', sa.String(length=255), nullable=False),
    sa.Column('as_of', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('source', 'account', name=op.f('pk_identities'))
    )
    op.create_index(op.f('ix_identities_user_sub'), 'identities', ['user_sub'], unique=False)


def _subscriptions() -> None:
    op.create_table('subscriptions',
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('user_sub', sa.String(length=255), nullable=True),
    sa.Column('owner_as_of', sa.DateTime(timezone=True), nullable=True),
    sa.Column('account', sa.String(length=255), nullable=True),
    sa.Column('account_as_of', sa.DateTime(timezone=True), nullable=True),
    sa.Column('product_id', sa.String(length=255), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('raw_status', sa.String(length=64), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('will_renew', sa.Boolean(), nullable=False),
    sa.Column('environment', sa.String(length=32), nullable=True),
    sa.Column('entitlement_names', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('as_of', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('source', 'key', name=op.f('pk_subscriptions'))
    )
    op.create_index('ix_subscriptions_expires_at', 'subscriptions', ['expires_at'], unique=False)
    op.create_index('ix_subscriptions_source_account', 'subscriptions', ['source', 'account'], unique=False)
    op.create_index(op.f('ix_subscriptions_user_sub'), 'subscriptions', ['user_sub'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_subscriptions_user_sub'), table_name='subscriptions')
    op.drop_index('ix_subscriptions_source_account', table_name='subscriptions')
    op.drop_index('ix_subscriptions_expires_at', table_name='subscriptions')

    op.drop_table('subscriptions')
    op.drop_index(op.f('ix_identities_user_sub'), table_name='identities')

    op.drop_table('identities')
    op.drop_index('ix_events_status_next_attempt_at', table_name='events')
    op.drop_index('ix_events_received_at', table_name='events')

    op.drop_table('events')
    op.drop_table('entitlements')
