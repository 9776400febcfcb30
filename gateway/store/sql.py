"""The SQL store for a database URL: PostgreSQL (``postgres.py``) or the embedded SQLite
database (``sqlite.py``), both behind the port (``port.py``) and sharing ``sql_base.py``.

The class is picked here, by URL, and nowhere else. PostgreSQL's is imported only when
asked for, so a SQLite gateway runs without its driver.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import sqlalchemy as sa

from .port import Store
from .sql_base import SqlStore, classified

__all__ = ["EngineWork", "SqlStore", "make_engine", "sql_store", "transactional"]


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


class EngineWork:
    """Work done on a store's engine outside the port's transactions (the outbox, the
    retention): its own connections, with the store's error classes."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @classmethod
    def of(cls, store: Store):
        """This work on ``store``'s database (under the entitlement cache, its inner store)."""
        return cls(getattr(store, "store", store).engine)

    @contextlib.contextmanager
    def _transaction(self, readonly: bool = False) -> Iterator[sa.Connection]:
        try:
            with self.engine.connect() as connection:
                connection = (connection.execution_options(gateway_readonly=True) if readonly
                              else transactional(connection))
                with connection.begin():
                    yield connection
        except sa.exc.DBAPIError as exc:
            raise classified(exc.orig, self.engine.dialect.loaded_dbapi) from exc
