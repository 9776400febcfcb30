"""Schema changes for migrations that run while the previous release serves.

A plain ``CREATE INDEX`` takes a SHARE lock on its table for the whole build: every
insert, update and delete of the table waits until the index is built (seconds per
million rows), and so does every delivery that writes it. ``CREATE INDEX CONCURRENTLY``
builds beside the writers; it must run outside a transaction, so the migration's
transaction is committed before it (``autocommit_block``), and it waits, blocking no one,
for the transactions already writing the table to end. A concurrent build that failed
half-way leaves an invalid index of that name behind: it is dropped and built again.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import sqlalchemy as sa
from alembic import op

_VALID = sa.text("SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                 "WHERE c.relname = :name AND pg_table_is_visible(c.oid)")


def create_index(name: str, table: str, columns: list[str], **kw) -> None:
    """``op.create_index``, without blocking the table's writers on PostgreSQL. The index
    is the same; one already built and valid is left as it is."""
    context = op.get_context()
    if context.dialect.name != "postgresql" or context.as_sql:  # SQLite; a script to read (offline)
        op.create_index(name, table, columns, **kw)
        return
    with context.autocommit_block():
        bind = op.get_bind()
        valid = bind.scalar(_VALID, {"name": name})
        if valid:
            return
        # The build waits for the transactions writing the table, however long: it
        # blocks nobody meanwhile, and giving up would leave an invalid index.
        with _no_lock_timeout(bind):
            if valid is not None:
                op.drop_index(name, table_name=table, postgresql_concurrently=True)
            op.create_index(name, table, columns, postgresql_concurrently=True, **kw)


@contextlib.contextmanager
def _no_lock_timeout(bind: sa.Connection) -> Iterator[None]:
    """Without the upgrade's lock timeout; none set (through a pooler), none touched."""
    lock_timeout = bind.scalar(sa.text("SHOW lock_timeout"))
    if lock_timeout == "0":
        yield
        return
    bind.execute(sa.text("SET lock_timeout = 0"))
    try:
        yield
    finally:
        bind.execute(sa.text("SELECT set_config('lock_timeout', :value, false)"), {"value": lock_timeout})
