"""The SQL store for a database URL: PostgreSQL (``postgres.py``) or the embedded SQLite
database (``sqlite.py``), both behind the port (``port.py``) and sharing ``sql_base.py``.

The class is picked here, by URL, and nowhere else. PostgreSQL's is imported only when
asked for, so a SQLite gateway runs without its driver.
"""
from __future__ import annotations

import sqlalchemy as sa

from .sql_base import SqlStore

__all__ = ["SqlStore", "make_engine", "sql_store", "transactional"]


def _store_class(dialect: str) -> type[SqlStore]:
    if dialect == "sqlite":
        from .sqlite import SqliteStore
        return SqliteStore
    from .postgres import PostgresStore
    return PostgresStore


def _dialect(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def make_engine(url: str) -> sa.Engine:
    return _store_class(_dialect(url)).create_engine(url)


def sql_store(url: str) -> SqlStore:
    """The store of the database at ``url``, on an engine of its own (``store.engine``)."""
    store_class = _store_class(_dialect(url))
    return store_class(store_class.create_engine(url))


def transactional(connection: sa.Connection) -> sa.Connection:
    """``connection``, with the statements between its BEGIN and COMMIT in one
    transaction (on SQLite they always are: every BEGIN is the store's own)."""
    return _store_class(connection.dialect.name).transactional(connection)
