"""The PostgreSQL store.

Serialization: every writer of a subscription or a user takes a transaction-scoped
advisory lock on it first, so concurrent deliveries queue instead of both reading the old
state; a new row needs no existing row to lock.

Round trips: in a write transaction, the statements every delivery makes run on psycopg's
own cursor in pipeline mode (``driver.Pipeline``, ``statements.for_postgres``). A
delivery to a known subscription then waits on the database four times: the subscription
as locked (which brings the event's id too), the user's rows (entitlements
before the change, tombstone, subscriptions), the feed's clock, and the commit.
The rest (the admin's reads, reconcile's, the retry worker's) go through SQLAlchemy
(``sql_base.SqlTransaction``), after the pipeline has been waited for.
"""
from __future__ import annotations

import contextlib
import time
from datetime import datetime
from collections.abc import Callable
from typing import Any, Iterator

import sqlalchemy as sa
from psycopg.types.json import Jsonb

from gateway.domain.entitlements import Grant
from gateway.domain.model import Subscription

from . import feed, rows, statements, tables
from .driver import Pipeline
from .notify import ChangeListener
from .pooler import pooled
from .reads import ReadConnections
from .sql_base import SqlStore, SqlTransaction

_SUBSCRIPTION_LOCK, _USER_LOCK, _ACCOUNT_LOCK = 1, 2, 3

#: A pooled connection unused for longer than this is pinged before it is handed out.
IDLE_PING_SECONDS = 1.0


def engine(url: str) -> sa.Engine:
    # Connections rest in autocommit: a read is its one statement, with no BEGIN and
    # COMMIT round trips and no isolation switch at checkout. A writing transaction
    # asks for READ COMMITTED (``transactional``), which SQLAlchemy undoes when the
    # connection goes back to the pool.
    created = sa.create_engine(url, pool_size=5, max_overflow=5, isolation_level="AUTOCOMMIT",
                               connect_args={"connect_timeout": 5})
    _ping_when_idle(created)
    _unprepared_behind_a_pooler(created)
    return created


def _unprepared_behind_a_pooler(engine: sa.Engine) -> None:
    """psycopg prepares a statement run often enough on a connection, and runs it by name
    from then on. Behind a pooler in transaction mode the next transaction may run on a
    server session that never prepared it ("prepared statement does not exist"), so on a
    connection that goes through a pooler (``pooler.pooled``) nothing is prepared."""
    @sa.event.listens_for(engine, "connect")
    def _connected(dbapi_connection, _record):
        if pooled(dbapi_connection):
            dbapi_connection.prepare_threshold = None


def _ping_when_idle(engine: sa.Engine) -> None:
    """Check a pooled connection before use only when it sat idle.

    SQLAlchemy's ``pool_pre_ping`` costs a round trip on every checkout. A connection in
    steady use has just proved itself; one that sat idle (a database restarted or failed
    over meanwhile, a proxy closed it) is pinged, and a dead one is replaced before the
    caller sees it. A connection that dies in the second after its last use fails that
    transaction (503, which the stores retry); SQLAlchemy then recycles every connection
    of the pool older than the failure.
    """
    @sa.event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection, record):
        record.info["idle_since"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection, record, _proxy):
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
            return  # new, or just used
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise sa.exc.DisconnectionError(str(exc)) from exc  # the pool connects anew
        if not alive:
            raise sa.exc.DisconnectionError("the connection did not answer a ping")


class PostgresStore(SqlStore):
    create_engine = staticmethod(engine)
    announces_changes = True  # migration 0006's trigger

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        self.reads = ReadConnections(engine, IDLE_PING_SECONDS)

    @staticmethod
    def transactional(connection: sa.Connection) -> sa.Connection:
        return connection.execution_options(isolation_level="READ COMMITTED")

    def _connect(self, readonly: bool) -> sa.Connection:
        # Every connection stays in autocommit (``engine``). A read needs nothing more:
        # under READ COMMITTED each statement saw the latest commits anyway. A writing
        # transaction sends its own BEGIN (``_opened``).
        return self.engine.connect()

    @contextlib.contextmanager
    def _opened(self, connection: sa.Connection, readonly: bool) -> Iterator[PostgresTransaction]:
        with Pipeline(connection, pipelined=not readonly).committing() as pipeline:
            if not readonly:
                # Sent with the first statements, not waited for: psycopg's own BEGIN (out
                # of autocommit) waits for its answer, a round trip. The statements after it,
                # SQLAlchemy's included, run in this transaction; its COMMIT (``committing``,
                # else SQLAlchemy's) or ROLLBACK (SQLAlchemy's, the pool's) ends it.
                pipeline.send(statements.for_postgres().begin)
            yield PostgresTransaction(connection, pipeline)

    def listen(self, forget, forget_everyone) -> ChangeListener:
        conninfo = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        return ChangeListener(conninfo, forget, forget_everyone)

    def entitlements_of(self, user_sub: str) -> list[Grant]:
        # One autocommit statement on a connection of the read's own (``reads``), without
        # SQLAlchemy's pool and Connection around it (bench/README.md).
        return rows.grants(self.reads.rows(statements.for_postgres().select_entitlements, {"user_sub": user_sub}))


_JSON_COLUMNS = {table.name: rows.json_columns(table)
                 for table in (tables.events, tables.subscriptions, tables.entitlement_events)}


def _for_driver(table: str, row: dict[str, Any]) -> dict[str, Any]:
    """A row's JSON values for psycopg: SQL NULL for None, as SQLAlchemy reads it back."""
    return {**row, **{name: None if row[name] is None else Jsonb(row[name]) for name in _JSON_COLUMNS[table]}}


def _held_by_user(found, user_subs: list[str]) -> dict[str, list[Subscription]]:
    """Rows of subscriptions, by owner: every one of ``user_subs``, holding none or some."""
    held: dict[str, list[Subscription]] = {user_sub: [] for user_sub in user_subs}
    for row in found:
        held[row.user_sub].append(rows.subscription(row))
    return held


def _pairs(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """A list of pairs as the two arrays a driver statement unnests together."""
    return {"firsts": [a for a, _ in pairs], "seconds": [b for _, b in pairs]}


class PostgresTransaction(SqlTransaction):
    """The hot statements on psycopg's cursor (``driver``); the rest through SQLAlchemy."""

    def __init__(self, connection: sa.Connection, driver: Pipeline) -> None:
        super().__init__(connection)
        self.driver = driver
        self.sql = statements.for_postgres()

    def _execute(self, statement, params=None):
        """A statement through SQLAlchemy, which reads its answer at once: after a sync."""
        self.driver.sync()
        return super()._execute(statement, params)

    def _advisory_locks(self, space: int, names: list[str]) -> None:
        """Taken in the order of ``names``, sent and not waited for (the next statement
        waited for has waited for the locks too)."""
        if names:
            self.driver.send(self.sql.advisory_locks, {"space": space, "names": names})

    # Event log.
    def _send_events(self, inserted: list[dict[str, Any]]) -> Callable[[], dict[tuple[str, str], int]]:
        # A statement (and a cursor) per row, none waited for: each row's answer comes
        # with the next statement waited for (``record_events_later``).
        cursors = [self.driver.send(self.sql.record_event, _for_driver("events", row), fresh=True) for row in inserted]

        def ids() -> dict[tuple[str, str], int]:
            pks = self.driver.first_values(cursors)
            return {(row["source"], row["event_id"]): pk for row, pk in zip(inserted, pks) if pk is not None}
        return ids

    def update_event(self, event_pk: int, **fields: Any) -> None:
        self.driver.send(statements.postgres_update_event(tuple(sorted(fields))), {**fields, "event_pk": event_pk})

    def update_claimed_event(self, event_pk: int, claim, **fields: Any) -> bool:
        sql = statements.postgres_update_claimed_event(tuple(sorted(fields)))
        return bool(self.driver.rows(sql, {**fields, "event_pk": event_pk, "claim": claim}, named=False))

    def _due_events(self, *args) -> sa.Select:
        # Concurrent workers skip each other's rows instead of waiting.
        return super()._due_events(*args).with_for_update(skip_locked=True)

    def link_events(self, links: list[tuple[int, list[tuple[str, str]]]]) -> None:
        linked = [{"event_pk": event_pk, "source": source, "key": key}
                  for event_pk, keys in links for source, key in sorted(set(keys))]
        if linked:
            self.driver.send(self.sql.link_event, many=linked)

    # Subscriptions. An existing row is locked by FOR UPDATE. A row that does not exist
    # yet cannot be, so its creators queue on an advisory lock, then lock the row as the
    # first one creates it: every writer of a subscription ends up serialized on its row.
    def lock_subscriptions(self, keys) -> dict[tuple[str, str], Subscription | None]:
        keys = sorted(set(keys))
        if len(keys) == 1:
            return {keys[0]: self._lock_subscription(*keys[0])}
        # For all at once: the rows that exist, locked in key order; then the advisory
        # locks of those that do not, in key order; then those rows, which a writer that
        # held the advisory lock first may have created.
        found = self._locked_rows(keys)
        missing = [key for key in keys if key not in found]
        if missing:
            self._advisory_locks(_SUBSCRIPTION_LOCK, [f"{source}:{key}" for source, key in missing])
            found.update(self._locked_rows(missing))
        return {key: found.get(key) for key in keys}

    def _lock_subscription(self, source: str, key: str) -> Subscription | None:
        found = self._locked_row(source, key)
        if found is None:
            self._advisory_locks(_SUBSCRIPTION_LOCK, [f"{source}:{key}"])
            found = self._locked_row(source, key)
        return found

    def _locked_row(self, source: str, key: str) -> Subscription | None:
        found = self.driver.rows(self.sql.lock_subscription, {"source": source, "key": key})
        return rows.subscription(found[0] if found else None)

    def _locked_rows(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Subscription]:
        found = map(rows.subscription, self.driver.rows(self.sql.lock_subscriptions, _pairs(keys)))
        return {(s.snapshot.source, s.snapshot.key): s for s in found}

    def save_subscriptions(self, subscriptions: list[Subscription], now) -> None:
        written = [_for_driver("subscriptions", rows.subscription_row(s, now)) for s in subscriptions]
        if written:
            self.driver.send(self.sql.upsert_subscription, many=written)

    def subscriptions_of_users(self, user_subs: list[str]) -> dict[str, list[Subscription]]:
        return _held_by_user(self.driver.rows(self.sql.subscriptions_of_users, {"user_subs": list(user_subs)}), user_subs)

    def lock_held_by(self, source, accounts, owners) -> list[Subscription]:
        params = {"source": source, "accounts": list(accounts), "owners": list(owners)}
        # Locked in the order the query returns them: key order.
        return [rows.subscription(row) for row in self.driver.rows(self.sql.lock_held_by, params)]

    # Identities.
    def resolve(self, source: str, account: str) -> str | None:
        found = self.driver.rows(self.sql.resolve, {"source": source, "account": account})
        return found[0].user_sub if found else None

    def link(self, source: str, account: str, user_sub: str, as_of, now) -> str | None:
        # One atomic statement; a second only when the held link won or the user was deleted.
        found = self.driver.rows(self.sql.link_identity, rows.identity_row(source, account, user_sub, as_of, now))
        return found[0].user_sub if found else self.resolve(source, account)

    def lock_accounts(self, accounts: list[tuple[str, str]]) -> None:
        self._advisory_locks(_ACCOUNT_LOCK, sorted({f"{source}:{account}" for source, account in accounts}))

    # Entitlements.
    def lock_users(self, user_subs: list[str]) -> None:
        self._advisory_locks(_USER_LOCK, sorted(set(user_subs)))

    def replace_entitlements_of(self, grants: dict[str, list[Grant]], now) -> None:
        keep = [(user_sub, g.name) for user_sub, granted in grants.items() for g in granted]
        written = [rows.grant_row(user_sub, g, now) for user_sub, granted in grants.items() for g in granted]
        # Both sent, neither waited for.
        self.driver.send(self.sql.stale_entitlements, {"owners": list(grants), **_pairs(keep)})
        if written:
            self.driver.send(self.sql.upsert_entitlement, many=written)

    def entitlements_of(self, user_sub: str) -> list[Grant]:
        # The read every app launch makes: SQLAlchemy's layers cost more than the query.
        return rows.grants(self.driver.rows(self.sql.select_entitlements, {"user_sub": user_sub}, named=False))

    def read_entitlements(self, user_subs: list[str]) -> tuple[dict[str, list[Grant]], set[str]]:
        before, deleted, _ = self.read_users(user_subs, [])
        return before, deleted

    def read_users(self, user_subs, owners):
        # Every statement sent, then all read: one round trip.
        params = {"user_subs": list(user_subs)}
        grants = self.driver.send(self.sql.entitlements_of_users, params)
        deleted = self.driver.send(self.sql.deleted_among, params)
        held = self.driver.send(self.sql.subscriptions_of_users, {"user_subs": list(owners)}, rows=True) if owners else None
        with self.driver.errors():
            before, gone = feed.grants_by_user(grants.fetchall(), list(user_subs)), {row[0] for row in deleted.fetchall()}
            return before, gone, _held_by_user(held.fetchall() if held else [], owners)

    # The feed: its clock is the transaction's last lock (``feed.py``).
    def take_feed_positions(self, count: int) -> tuple[int, datetime]:
        ((position, through),) = self.driver.rows(self.sql.take_feed_positions, {"count": count}, named=False)
        return position - count, rows.utc(through)

    def append_feed(self, events, expiries_through=None) -> None:
        if events:
            self.driver.send(self.sql.append_feed, many=[_for_driver("entitlement_events", feed.event_row(e))
                                                         for e in events])
        if expiries_through is not None:
            super().append_feed([], expiries_through)
