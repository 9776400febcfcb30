"""What the PostgreSQL and SQLite stores share: the frame of a transaction, the one rule
telling a refused value from an outage, and the reads both run through SQLAlchemy (the
admin's, the explain API's, reconcile's, the retry worker's)."""
from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable
from datetime import datetime
from typing import Any, Iterator

import sqlalchemy as sa

from gateway.domain.events import Event
from gateway.domain.model import Subscription

from . import rows, statements, tables
from .accounts import AccountsTransaction
from .checkout_sessions import CheckoutSessionsTransaction
from .deleted_subscriptions import DeletedSubscriptionsTransaction
from .feed import FeedTransaction
from .port import Store, StoreRefused, StoreUnavailable, Transaction
from .reconcile_cursors import ReconcileTransaction
from .transfers import TransfersTransaction

# SQLite's refusals of a value or a constraint (sqlite3 calls all constraints
# IntegrityError, a trigger's RAISE included, which is an operator's switch, not the input).
_SQLITE_REFUSALS = frozenset({
    "SQLITE_TOOBIG", "SQLITE_MISMATCH", "SQLITE_CONSTRAINT_CHECK", "SQLITE_CONSTRAINT_DATATYPE",
    "SQLITE_CONSTRAINT_FOREIGNKEY", "SQLITE_CONSTRAINT_NOTNULL", "SQLITE_CONSTRAINT_PRIMARYKEY",
    "SQLITE_CONSTRAINT_UNIQUE"})


def classified(error: BaseException, dbapi) -> StoreUnavailable | StoreRefused:
    """The one rule telling a refusal from an outage. The database refused the values it
    was given (DB-API DataError: too long, out of range, a NUL; IntegrityError: a
    constraint, the event log's dedupe being an ON CONFLICT, never an error): retrying
    cannot help. Anything else (a lost connection, a timeout, a deadlock, a full disk)
    may pass, and is an outage."""
    refused = isinstance(error, (dbapi.DataError, dbapi.IntegrityError))
    sqlite_name = getattr(error, "sqlite_errorname", None)
    if refused and sqlite_name is not None:
        refused = sqlite_name in _SQLITE_REFUSALS
    return (StoreRefused if refused else StoreUnavailable)(describe(error))


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error) else ''}"


class SqlStore(Store):
    """A store on a SQLAlchemy engine (``sql.sql_store`` picks the database's own)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def close(self) -> None:
        self.engine.dispose()

    @staticmethod
    @abc.abstractmethod
    def create_engine(url: str) -> sa.Engine:
        """An engine (and its pool) set up as this store expects its connections."""

    @staticmethod
    def transactional(connection: sa.Connection) -> sa.Connection:
        """``connection``, with the statements between its BEGIN and COMMIT in one transaction."""
        return connection

    @contextlib.contextmanager
    def transaction(self, readonly: bool = False) -> Iterator[Transaction]:
        try:
            connection = self._connect(readonly)
        except sa.exc.DBAPIError as exc:
            raise StoreUnavailable(describe(exc.orig)) from exc
        try:
            with connection.begin(), self._opened(connection, readonly) as tx:
                yield tx
        except sa.exc.DBAPIError as exc:  # whatever the database refused, nothing was committed
            raise classified(exc.orig, connection.dialect.loaded_dbapi) from exc
        finally:
            connection.close()

    @abc.abstractmethod
    def _connect(self, readonly: bool) -> sa.Connection:
        """A pooled connection, set for a writing or a read-only transaction."""

    @abc.abstractmethod
    def _opened(self, connection: sa.Connection, readonly: bool) -> contextlib.AbstractContextManager[Transaction]:
        """The transaction's statements on ``connection``, begun by the caller."""


class SqlTransaction(FeedTransaction, AccountsTransaction, DeletedSubscriptionsTransaction, CheckoutSessionsTransaction,
                     ReconcileTransaction, TransfersTransaction, Transaction):
    def __init__(self, connection: sa.Connection) -> None:
        self.connection = connection

    def _execute(self, statement, params=None):
        return self.connection.execute(statement, params)

    def _insert_new(self, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        """Insert ``rows``, leaving out those whose key the table holds already: in one
        statement, so a row committed meanwhile by another transaction is left out too."""
        if rows:
            insert = statements.INSERTS[self.connection.dialect.name](table).on_conflict_do_nothing()
            self._execute(insert, rows)

    # Cursors: one row per consumer, keyed by its name (``feed_cursors``, ``reconcile_cursors``).
    def _cursor(self, column: sa.Column, key: sa.Column, name: str) -> Any:
        found = self._execute(sa.select(column).where(key == name)).first()
        return None if found is None else found[0]

    def _move_cursor(self, key: sa.Column, name: str, values: dict[str, Any]) -> None:
        """Update the cursor's row, or insert it when there is none yet."""
        moved = self._execute(sa.update(key.table).where(key == name).values(values))
        if not moved.rowcount:
            self._execute(sa.insert(key.table).values({key.name: name, **values}))

    # Event log.
    def record_events(self, events: list[dict[str, Any]]) -> list[Event | None]:
        return self.record_events_later(events)()

    def record_events_later(self, events: list[dict[str, Any]]) -> Callable[[], list[Event | None]]:
        fresh: dict[tuple[str, str], dict] = {}  # the first of a repeated id is the one recorded
        for fields in events:
            fresh.setdefault((fields["source"], fields["event_id"]), rows.event_row(fields))
        read_ids = self._send_events(list(fresh.values()))

        def answers() -> list[Event | None]:
            ids, found = read_ids(), []
            for fields in events:
                key = (fields["source"], fields["event_id"])
                pk = ids.pop(key, None)  # popped: a repeat of the id in this call is None
                found.append(None if pk is None else rows.recorded(pk, fresh[key]))
            return found
        return answers

    @abc.abstractmethod
    def _send_events(self, inserted: list[dict[str, Any]]) -> Callable[[], dict[tuple[str, str], int]]:
        """Insert these rows of distinct ids; a call that answers the (source, event_id) ->
        id of those that were not recorded yet."""

    def get_event(self, event_pk: int) -> Event | None:
        return rows.event(self._execute(statements.shared().select_event, {"id": event_pk}).first())

    def hold_event(self, event_pk: int) -> bool:
        # FOR KEY SHARE, the lock a foreign key takes: the retention's FOR UPDATE SKIP LOCKED
        # passes over it, and a batch that deleted the row first makes this find nothing.
        # (SQLite has one writer at a time: the row is there or not.)
        held = sa.select(tables.events.c.id).where(tables.events.c.id == event_pk).with_for_update(key_share=True)
        return self._execute(held).first() is not None

    def search_events(self, **filters) -> list[Event]:
        return [rows.event(row) for row in self._execute(statements.search_events(**filters))]

    def count_events(self, statuses) -> dict[tuple[str, str], int]:
        return {(source, status): n for source, status, n in self._execute(statements.count_events(statuses))}

    def claim_due_events(self, *, now, stale_before, lease_until, limit) -> list[Event]:
        ids = list(self._execute(self._due_events(now, stale_before, limit)).scalars())
        if ids:
            self._execute(statements.lease_events(ids, lease_until))
        return [self.get_event(event_pk) for event_pk in ids]

    def _due_events(self, now: datetime, stale_before: datetime, limit: int) -> sa.Select:
        return statements.due_events(now, stale_before, limit)

    # Evidence.
    def event_links(self, event_pks: list[int]) -> dict[int, list[tuple[str, str]]]:
        links: dict[int, list[tuple[str, str]]] = {pk: [] for pk in event_pks}
        if event_pks:
            for row in self._execute(statements.event_links(event_pks)):
                links[row.event_pk].append((row.source, row.key))
        return links

    def events_touching(self, keys, *, before_pk=None, limit=100) -> list[Event]:
        if not keys:
            return []
        return [rows.event(row) for row in self._execute(statements.events_touching(keys, before_pk, limit))]

    # Subscriptions.
    def get_subscription(self, source: str, key: str) -> Subscription | None:
        query = statements.shared().select_subscription
        return rows.subscription(self._execute(query, {"source": source, "key": key}).first())
