"""subscriptions.shown_as_of and revocations "shown": when the App Store signed what a view
shows, and when it last showed each refund recorded

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07

An App Store refund stood until a REFUND_REVERSED of it: with that notification lost, a
later view of the transaction without its ``revocationDate`` (Apple removes it when it
reverses the refund) gave nothing back, and the user stayed revoked. The gateway now
keeps, per refund, the stamp of the newest view that showed it (``Revocations.shown``, the
``shown`` key of the JSON), and a view of the period stamped after it, without the refund,
gives the period back. Rows recorded before this name no such stamp: an App Store refund's
is set to the row's ``as_of``, the stamp of the newest view stored, no earlier than any
view that showed the refund (exact where the row shows it), so that no view older than the
refund can give it back. A row whose newest view already lacked the refund keeps it until a
view signed after that one (the README says how to have reconcile read those).

A view counts as of when Apple signed the transaction it shows (``shown_as_of``: a
notification may carry a transaction signed before it). Nullable, no default: adding it
rewrites no rows; NULL (a view stored before this, or rewritten since by the previous
release, ``derived_as_of``) tells no reversal. The JSON gains a key, which the previous
release ignores (it reads ``taken`` and ``given_back``) and drops when it rewrites the row
(the refund is then final again, as that release has it). Rows are updated in batches
outside the migration's transaction, each only if no one wrote it since it was read (its
``updated_at``), and a rerun skips what is done.
"""
from datetime import timezone

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None

TABLE = 'subscriptions'
COLUMN = 'revocations'
BATCH = 1000


def upgrade() -> None:
    op.add_column(TABLE, sa.Column('shown_as_of', sa.DateTime(timezone=True), nullable=True))
    if op.get_context().dialect.name != 'postgresql':
        _stamp(op.get_bind())
        return
    with op.get_context().autocommit_block():  # beside the previous release's writes, as 0003
        _stamp(op.get_bind())


def _table():
    return sa.table(TABLE, sa.column('source'), sa.column('key'), sa.column('as_of', sa.DateTime(timezone=True)),
                    sa.column('updated_at', sa.DateTime(timezone=True)),
                    sa.column(COLUMN, sa.JSON().with_variant(JSONB(), 'postgresql')))


def _stamp(bind) -> None:
    table = _table()
    rows = bind.execute(sa.select(table.c.key, table.c.as_of, table.c.updated_at, table.c[COLUMN])
                        .where(table.c.source == 'apple', table.c[COLUMN].is_not(None))).all()
    update = (sa.update(table).where(table.c.source == 'apple', table.c.key == sa.bindparam('k'),
                                     table.c.updated_at == sa.bindparam('u'))
              .values({COLUMN: sa.bindparam('v', type_=table.c[COLUMN].type)}))
    changed = [{'k': key, 'u': updated_at, 'v': value} for key, as_of, updated_at, revocations in rows
               if (value := _shown(revocations, as_of)) is not None]
    for start in range(0, len(changed), BATCH):
        bind.execute(update, changed[start:start + BATCH])


def _shown(revocations: dict, as_of) -> dict | None:
    """``revocations`` with a stamp for each refund that has none; ``None``: nothing to add."""
    if as_of.tzinfo is None:  # SQLite keeps no zone; stored as UTC
        as_of = as_of.replace(tzinfo=timezone.utc)
    shown = dict(revocations.get('shown') or {})
    missing = {item[0] for item in revocations.get('taken') or []} - set(shown)
    if not missing:
        return None
    return {**revocations, 'shown': {**shown, **dict.fromkeys(sorted(missing), as_of.isoformat())}}


def downgrade() -> None:
    op.drop_column(TABLE, 'shown_as_of')  # the JSON's key is ignored by the previous release
