"""transfers: the register of the transfers a store made, replayed by their stamps

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

A RevenueCat TRANSFER moved only what its accounts held when it was applied, so of
A->B and the newer B->A, delivered in that reverse order, the second found nothing at
B and A's purchase ended with B. Each transfer is now recorded, one row per account it
moves from, and every transfer applied replays the recorded ones by their stamps
(``domain.changes.transferred``). A new table: no row is rewritten. Transfers applied
before it are not in the register; they keep what they moved.
"""
from alembic import op
import sqlalchemy as sa

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'transfers',
        sa.Column('source', sa.String(length=32), nullable=False),
        sa.Column('account', sa.String(length=255), nullable=False),
        sa.Column('as_of', sa.DateTime(timezone=True), nullable=False),
        sa.Column('to_user', sa.String(length=255), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('source', 'account', 'as_of', name='pk_transfers'),
    )
    op.create_index('ix_transfers_to_user', 'transfers', ['to_user'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_transfers_to_user', table_name='transfers')
    op.drop_table('transfers')
