"""admin_login_attempts: the admin's sign-in attempts per client, shared by every worker

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07

The admin's login throttle counted failures in each process's memory, so a guesser got
the limit once per gunicorn worker of every instance. The count now lives here, taken in
one statement per attempt. A new table: the counts in memory before it are forgotten.
"""
from alembic import op
import sqlalchemy as sa

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'admin_login_attempts',
        sa.Column('client', sa.String(length=64), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('window_start', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('client', name='pk_admin_login_attempts'),
    )
    op.create_index('ix_admin_login_attempts_window_start', 'admin_login_attempts', ['window_start'])


def downgrade() -> None:
    op.drop_index('ix_admin_login_attempts_window_start', table_name='admin_login_attempts')
    op.drop_table('admin_login_attempts')
