"""The entitlement read's own PostgreSQL connections.

Every app launch reads its user's entitlements: one autocommit statement. Checking a
connection out of SQLAlchemy's pool and back in cost a third of what the store spends on
that read (bench/README.md), so the read keeps a few idle connections of its own, taken
and given back last-in first-out (``list.pop`` and ``append`` are atomic, no lock). There
are never more than the reads running at once, and at most ``MAX_IDLE`` wait. Each is made
by the engine as its pool would make it (autocommit, nothing prepared behind a pooler),
then detached from the pool. Health as in the pool (``postgres._ping_when_idle``): one
that sat idle for over a second is pinged first, and after a failed ping every idle one
is dropped (a restart or failover took them all); one that fails its statement is closed,
never used again, and a lost one fails that read only (503).
"""
from __future__ import annotations

import time

import sqlalchemy as sa

from .driver import driver_failure
from .port import StoreUnavailable
from .sql_base import describe

#: Idle connections kept; one more, given back, is closed.
MAX_IDLE = 5


class ReadConnections:
    def __init__(self, engine: sa.Engine, idle_ping_seconds: float) -> None:
        self.engine = engine
        self.idle_ping_seconds = idle_ping_seconds
        self._idle: list[tuple[float, object]] = []  # (when given back, psycopg connection)
        # ``engine.dispose()`` (``SqlStore.close``, the tests' teardowns) closes these too.
        sa.event.listen(engine, "engine_disposed", lambda _engine: self.close())

    def rows(self, sql: str, params) -> list[tuple]:
        """The rows of one autocommit statement, as plain tuples."""
        connection = self._take()
        try:
            found = connection.execute(sql, params).fetchall()
        except self.engine.dialect.loaded_dbapi.Error as exc:
            connection.close()
            raise driver_failure(exc, self.engine.dialect, connection, lambda _exc: None) from exc
        if len(self._idle) < MAX_IDLE:
            self._idle.append((time.monotonic(), connection))
        else:
            connection.close()
        return found

    def close(self) -> None:
        while self._idle:
            self._drop_idle()

    def _take(self):
        try:
            since, connection = self._idle.pop()
        except IndexError:
            return self._connect()
        if time.monotonic() - since < self.idle_ping_seconds:
            return connection
        try:
            self.engine.dialect.do_ping(connection)
        except self.engine.dialect.loaded_dbapi.Error:
            connection.close()
            self.close()  # as old as this one: dead too, most likely
            return self._connect()
        return connection

    def _connect(self):
        try:
            pooled = self.engine.raw_connection()  # the engine's connect hooks run on it
        except self.engine.dialect.loaded_dbapi.Error as exc:  # the pool raises the driver's own error here
            raise StoreUnavailable(describe(exc)) from exc
        connection = pooled.dbapi_connection
        pooled.detach()
        connection.autocommit = True  # as the pool's rest (``postgres.engine``); never left in a transaction
        return connection

    def _drop_idle(self) -> None:
        try:
            _since, connection = self._idle.pop()
        except IndexError:
            return
        connection.close()
