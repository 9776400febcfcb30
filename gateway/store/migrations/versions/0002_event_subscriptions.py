"""event_subscriptions: which subscriptions each delivery touched

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Idempotent on top of Alembic's own bookkeeping: a table or index already there (a
database built by hand from ``tables.py``) is left as it is. Deliveries applied before
this revision have no links; replaying them (``flask events replay``) writes them.
"""
from alembic import op
import sqlalchemy as sa

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

TABLE = 'event_subscriptions'
INDEX = 'ix_event_subscriptions_source_key'


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table(TABLE):
        op.create_table(TABLE,
        sa.Column('event_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('source', sa.String(length=32), nullable=False),
        sa.Column('key', sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(['event_pk'], ['events.id'], name='fk_event_subscriptions_event_pk',
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('event_pk', 'source', 'key', name=op.f('pk_event_subscriptions'))
        )
    if INDEX not in {index['name'] for index in sa.inspect(op.get_bind()).get_indexes(TABLE)}:
        op.create_index(INDEX, TABLE, ['source', 'key', 'event_pk'], unique=False)


def downgrade() -> None:
    op.drop_index(INDEX, table_name=TABLE)
    op.drop_table(TABLE)
