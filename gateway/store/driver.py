"""PostgreSQL: a transaction's hot statements on psycopg's own cursor, in pipeline mode.

A statement whose answer is not needed (a write, a lock) is sent and not waited for: it
travels with the next statement that is waited for, or with the COMMIT, and its error,
if any, fails the transaction like any other. This skips SQLAlchemy's execution layer,
which cost more than the statements did (bench/README.md).
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

import sqlalchemy as sa
from psycopg.rows import namedtuple_row

from . import statements
from .port import StoreRefused, StoreUnavailable
from .sql_base import classified, describe

log = logging.getLogger("gateway.store")


def driver_failure(exc: BaseException, dialect: sa.Dialect, dbapi_connection,
                   invalidate: Callable[[BaseException], None]) -> StoreUnavailable | StoreRefused:
    """A driver's error as the store reports it; a lost connection is invalidated first, so
    the pool replaces it, as SQLAlchemy's own path would."""
    if dialect.is_disconnect(exc, dbapi_connection, None):
        invalidate(exc)
        return StoreUnavailable(describe(exc))
    return classified(exc, dialect.loaded_dbapi)


class Pipeline:
    """The statements of one transaction on ``connection``'s driver connection. In a
    read-only transaction (autocommit statements: nothing to pipeline) each is answered
    at once."""

    def __init__(self, connection: sa.Connection, pipelined: bool) -> None:
        self.connection = connection
        self.pipelined = pipelined
        self._open: contextlib.ExitStack | None = None

    @contextlib.contextmanager
    def committing(self) -> Iterator[Pipeline]:
        """Every statement sent has answered before the caller commits (its error, if
        any, raised here)."""
        try:
            yield self
            if self._open is not None:
                # The COMMIT travels with the statements not yet answered, and the pipeline's
                # end waits for them all: one round trip. SQLAlchemy's own commit, next, finds
                # the transaction ended and sends nothing. (Sending it may already bring back
                # the refusal of an earlier statement: handled below like any other.)
                self.send(statements.for_postgres().commit)
        except BaseException:
            if self._open is not None:
                self._abandon()
            raise
        self.sync()

    def send(self, sql: str, params: dict | None = None, *, many: list[dict] | None = None,
             rows: bool = False, fresh: bool = False):
        """Send a statement and return its cursor without waiting for the answer.

        The cursor is the statement's own on this connection, kept from one transaction
        to the next (``_cursor``), unless ``fresh``: the caller sends the statement again
        before it reads this answer.
        """
        dbapi_connection = self.connection.connection.dbapi_connection
        try:  # as ``errors()``, without a context manager's cost on every statement
            if self._open is None and self.pipelined:
                self._open = contextlib.ExitStack()
                self._open.enter_context(dbapi_connection.pipeline())
            cursor = _new_cursor(dbapi_connection, rows) if fresh else self._cursor(dbapi_connection, sql, rows)
            if many is not None:
                cursor.executemany(sql, many)
            else:
                cursor.execute(sql, params)
        except self.connection.dialect.loaded_dbapi.Error as exc:
            raise self._failure(exc) from exc
        return cursor

    def _cursor(self, dbapi_connection, sql: str, rows: bool):
        """The cursor of ``sql`` on this connection. Making a cursor, and its first look-up
        of how to send each type of parameter, cost more than sending the statement again
        on the one that did (bench/README.md); each statement's answer is read before the
        statement is sent again (or never: a write, a lock), and its error, if any, fails
        the transaction whichever cursor it came to. The cursors go with the connection
        (SQLAlchemy's ``info`` of it)."""
        kept = self.connection.connection.info.setdefault("gateway_cursors", {})
        cursor = kept.get((sql, rows))
        if cursor is None or cursor.connection is not dbapi_connection or cursor.closed:
            cursor = kept[(sql, rows)] = _new_cursor(dbapi_connection, rows)
        return cursor

    def rows(self, sql: str, params: dict, named: bool = True) -> list:
        """The rows of a statement (and the answers of everything sent before it), as
        named tuples or, where the caller unpacks them by position, plain ones."""
        cursor = self.send(sql, params, rows=named)
        try:
            return cursor.fetchall()
        except self.connection.dialect.loaded_dbapi.Error as exc:
            raise self._failure(exc) from exc

    def first_values(self, cursors: list) -> list:
        """What each of these cursors' statements returned: the first column of its one
        row, or None when it returned none. Read when asked, so a statement waited for
        since has brought them already."""
        values = []
        with self.errors():
            for cursor in cursors:
                row = cursor.fetchone()
                values.append(row[0] if row else None)
        return values

    def sync(self) -> None:
        """Wait for every statement sent; SQLAlchemy's own statements run after this."""
        if self._open is not None:
            pipeline, self._open = self._open, None
            with self.errors():
                pipeline.close()

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        try:
            yield
        except self.connection.dialect.loaded_dbapi.Error as exc:
            raise self._failure(exc) from exc

    def _failure(self, exc: BaseException) -> StoreUnavailable | StoreRefused:
        return driver_failure(exc, self.connection.dialect, self.connection.connection.dbapi_connection,
                              self.connection.invalidate)

    def _abandon(self) -> None:
        """After a failure: out of pipeline mode before the rollback.

        The transaction is rolled back next, so the answers still in flight no longer
        matter (in an aborted pipeline they are refusals too); the error being raised is
        the one reported. But the connection must leave pipeline mode, or the rollback and
        the pool's next user of the connection would run in it. The pipeline is closed as
        if nothing had failed: told of the error, psycopg would log what it meets on the
        way out as a warning of its own, outside the gateway's JSON lines.
        """
        pipeline, self._open = self._open, None
        try:
            pipeline.close()
        except Exception as exc:  # noqa: BLE001 - see above
            log.debug("answers of a failed transaction discarded", extra={"fields": {"error": describe(exc)}})
        if self.connection.invalidated:  # a lost connection: the pool replaces it already
            return
        if self.connection.connection.dbapi_connection.pgconn.pipeline_status:  # still in it: of no use to anyone
            self.connection.invalidate()


def _new_cursor(dbapi_connection, rows: bool):
    return dbapi_connection.cursor(row_factory=namedtuple_row) if rows else dbapi_connection.cursor()
