"""reconcile_cursors: where each source's reconcile stopped, so the next run goes on from there

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05

No row is the start: a source without a cursor is read from its first key.
"""
from alembic import op
import sqlalchemy as sa

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('reconcile_cursors',
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('last_key', sa.String(length=255), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('source', name=op.f('pk_reconcile_cursors'))
    )


def downgrade() -> None:
    op.drop_table('reconcile_cursors')
