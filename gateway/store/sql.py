"""The SQLAlchemy store, for PostgreSQL and the embedded SQLite database.

Serialization: on PostgreSQL every writer of a subscription or a user takes a
transaction-scoped advisory lock on it first, so concurrent deliveries queue instead of
both reading the old state; a new row needs no existing row to lock. SQLite has one
writer at a time: every writing transaction starts with BEGIN IMMEDIATE, and readers
(plain BEGIN, in WAL mode) do not wait for it.

Round trips: in a PostgreSQL write transaction, the statements every delivery makes run
on psycopg's own cursor in pipeline mode (``statements._driver_statements``). A statement
whose answer is not needed (a write, a lock) is sent and not waited for: it travels with
the next statement that is waited for, or with the COMMIT, and its error, if any, fails
the transaction like any other. A delivery to a known subscription then waits on the
database four times instead of nine, and skips SQLAlchemy's execution layer, which cost
more than the statements did (bench/README.md).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from datetime import datetime, timezone
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

try:  # the PostgreSQL driver; SQLite needs none
    from psycopg.rows import namedtuple_row
    from psycopg.types.json import Jsonb
except ImportError:  # pragma: no cover
    namedtuple_row = Jsonb = None

from gateway.domain.entitlements import Grant
from gateway.domain.events import Event
from gateway.domain.model import NO_REVOCATIONS, Revocations, Snapshot, Status, Subscription, link_claim

from . import statements
from . import tables as t
from .port import Store, StoreRefused, StoreUnavailable, Transaction

log = logging.getLogger("gateway.store")

_SUBSCRIPTION_LOCK, _USER_LOCK, _ACCOUNT_LOCK = 1, 2, 3


def make_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    # Connections rest in autocommit: a read is its one statement, with no BEGIN and
    # COMMIT round trips and no isolation switch at checkout. A writing transaction
    # asks for READ COMMITTED (``transactional``), which SQLAlchemy undoes when the
    # connection goes back to the pool.
    engine = sa.create_engine(url, pool_size=5, max_overflow=5, isolation_level="AUTOCOMMIT",
                              connect_args={"connect_timeout": 5})
    _ping_when_idle(engine)
    return engine


def transactional(connection: sa.Connection) -> sa.Connection:
    """``connection``, with the statements between its BEGIN and COMMIT in one
    transaction (on SQLite they always are: BEGIN is issued by ``_sqlite_engine``)."""
    if connection.dialect.name == "postgresql":
        return connection.execution_options(isolation_level="READ COMMITTED")
    return connection


#: A pooled connection unused for longer than this is pinged before it is handed out.
IDLE_PING_SECONDS = 1.0


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


def _sqlite_engine(url: str) -> sa.Engine:
    database = sa.engine.make_url(url).database
    if database and database != ":memory:":
        os.makedirs(os.path.dirname(os.path.abspath(database)), exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(connection):
        readonly = connection.get_execution_options().get("gateway_readonly")
        connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

    return engine


class SqlStore(Store):
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        self.d = statements.for_dialect(engine.dialect.name).driver

    @contextlib.contextmanager
    def transaction(self, readonly: bool = False) -> Iterator[Transaction]:
        try:
            connection = self.engine.connect()
            if not readonly:
                connection = transactional(connection)
            elif not self.postgres:
                # SQLite: a deferred BEGIN (a snapshot that waits for no writer). PostgreSQL
                # reads in autocommit (make_engine): under READ COMMITTED each statement
                # saw the latest commits anyway.
                connection = connection.execution_options(gateway_readonly=True)
        except sa.exc.DBAPIError as exc:
            raise StoreUnavailable(_describe(exc)) from exc
        try:
            with connection.begin(), _SqlTransaction.opened(connection, readonly) as tx:
                yield tx
        except sa.exc.DBAPIError as exc:  # whatever the database refused, nothing was committed
            raise _classified(exc.orig, connection.dialect.loaded_dbapi) from exc
        finally:
            connection.close()

    def entitlements_of(self, user_sub: str) -> list[Grant]:
        if not self.postgres:
            return super().entitlements_of(user_sub)
        # PostgreSQL: one autocommit statement on a pooled connection, without the
        # SQLAlchemy Connection and transaction around it, which cost about a third of
        # the read's time in the store (bench/README.md).
        dbapi = self.engine.dialect.loaded_dbapi
        try:
            pooled = self.engine.raw_connection()
        except dbapi.Error as exc:  # the pool raises the driver's own error here
            raise StoreUnavailable(_describe_driver_error(exc)) from exc
        try:
            cursor = pooled.driver_connection.cursor()
            cursor.execute(self.d.select_entitlements, {"user_sub": user_sub})
            return _grants(cursor.fetchall())
        except dbapi.Error as exc:
            raise _driver_failure(exc, self.engine.dialect, pooled.dbapi_connection, pooled.invalidate) from exc
        finally:
            pooled.close()


def _describe(exc: sa.exc.DBAPIError) -> str:
    return _describe_driver_error(exc.orig)


def _driver_failure(exc: BaseException, dialect, dbapi_connection, invalidate) -> StoreUnavailable | StoreRefused:
    """A driver's error as the store reports it; a lost connection is invalidated first, so
    the pool replaces it, as SQLAlchemy's own path would."""
    if dialect.is_disconnect(exc, dbapi_connection, None):
        invalidate(exc)
        return StoreUnavailable(_describe_driver_error(exc))
    return _classified(exc, dialect.loaded_dbapi)


# SQLite's refusals of a value or a constraint (sqlite3 calls all constraints
# IntegrityError, a trigger's RAISE included, which is an operator's switch, not the input).
_SQLITE_REFUSALS = frozenset({
    "SQLITE_TOOBIG", "SQLITE_MISMATCH", "SQLITE_CONSTRAINT_CHECK", "SQLITE_CONSTRAINT_DATATYPE",
    "SQLITE_CONSTRAINT_FOREIGNKEY", "SQLITE_CONSTRAINT_NOTNULL", "SQLITE_CONSTRAINT_PRIMARYKEY",
    "SQLITE_CONSTRAINT_UNIQUE"})


def _classified(error: BaseException, dbapi) -> StoreUnavailable | StoreRefused:
    """The one rule telling a refusal from an outage. The database refused the values it
    was given (DB-API DataError: too long, out of range, a NUL; IntegrityError: a
    constraint, the event log's dedupe being an ON CONFLICT, never an error): retrying
    cannot help. Anything else (a lost connection, a timeout, a deadlock, a full disk)
    may pass, and is an outage."""
    refused = isinstance(error, (dbapi.DataError, dbapi.IntegrityError))
    sqlite_name = getattr(error, "sqlite_errorname", None)
    if refused and sqlite_name is not None:
        refused = sqlite_name in _SQLITE_REFUSALS
    return (StoreRefused if refused else StoreUnavailable)(_describe_driver_error(error))


def _describe_driver_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error) else ''}"


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class _SqlTransaction(Transaction):
    def __init__(self, connection: sa.Connection, readonly: bool = False) -> None:
        self.db = connection
        self.postgres = connection.dialect.name == "postgresql"
        self.q = statements.for_dialect(connection.dialect.name)
        self.d = self.q.driver  # PostgreSQL: the hot statements, on the driver (module doc)
        # A read-only transaction is autocommit statements (make_engine): nothing to pipeline.
        self._pipelined = self.d is not None and not readonly
        self._pipeline: contextlib.ExitStack | None = None

    @classmethod
    @contextlib.contextmanager
    def opened(cls, connection: sa.Connection, readonly: bool) -> Iterator[_SqlTransaction]:
        """The transaction's statements on ``connection``; every statement sent has
        answered before the caller commits (its error, if any, raised here)."""
        tx = cls(connection, readonly)
        try:
            yield tx
            if tx._pipeline is not None:
                # The COMMIT travels with the statements not yet answered, and the pipeline's
                # end waits for them all: one round trip. SQLAlchemy's own commit, next, finds
                # the transaction ended and sends nothing. (Sending it may already bring back
                # the refusal of an earlier statement: handled below like any other.)
                tx._send(tx.d.commit)
        except BaseException:
            if tx._pipeline is not None:
                tx._leave_pipeline()
            raise
        tx._sync()

    def _leave_pipeline(self) -> None:
        """After a failure: out of pipeline mode before the rollback.

        The transaction is rolled back next, so the answers still in flight no longer
        matter (in an aborted pipeline they are refusals too); the error being raised is
        the one reported. But the connection must leave pipeline mode, or the rollback and
        the pool's next user of the connection would run in it. The pipeline is closed as
        if nothing had failed: told of the error, psycopg would log what it meets on the
        way out as a warning of its own, outside the gateway's JSON lines.
        """
        pipeline, self._pipeline = self._pipeline, None
        try:
            pipeline.close()
        except Exception as exc:  # noqa: BLE001 - see above
            log.debug("answers of a failed transaction discarded", extra={"fields": {
                "error": _describe_driver_error(exc)}})
        if self.db.invalidated:  # a lost connection: the pool replaces it already
            return
        if self.db.connection.dbapi_connection.pgconn.pipeline_status:  # still in it: of no use to anyone
            self.db.invalidate()

    # PostgreSQL: statements on the driver's cursor, in pipeline mode.
    def _send(self, sql: str, params: dict | None = None, *, many: list[dict] | None = None,
              returning: bool = False, rows: bool = False):
        """Send a statement and return its cursor without waiting for the answer (in a
        read-only transaction, the answer is waited for)."""
        dbapi_connection = self.db.connection.dbapi_connection
        with self._driver_errors():
            if self._pipeline is None and self._pipelined:
                self._pipeline = contextlib.ExitStack()
                self._pipeline.enter_context(dbapi_connection.pipeline())
            cursor = dbapi_connection.cursor(row_factory=namedtuple_row) if rows else dbapi_connection.cursor()
            if many is not None:
                cursor.executemany(sql, many, returning=returning)
            else:
                cursor.execute(sql, params)
        return cursor

    def _rows(self, sql: str, params: dict, named: bool = True) -> list:
        """The rows of a statement (and the answers of everything sent before it), as
        named tuples or, where the caller unpacks them by position, plain ones."""
        cursor = self._send(sql, params, rows=named)
        with self._driver_errors():
            return cursor.fetchall()

    def _sync(self) -> None:
        """Wait for every statement sent; SQLAlchemy's own statements run after this."""
        if self._pipeline is not None:
            pipeline, self._pipeline = self._pipeline, None
            with self._driver_errors():
                pipeline.close()

    @contextlib.contextmanager
    def _driver_errors(self) -> Iterator[None]:
        try:
            yield
        except self.db.dialect.loaded_dbapi.Error as exc:
            raise _driver_failure(exc, self.db.dialect, self.db.connection.dbapi_connection,
                                  self.db.invalidate) from exc

    def _execute(self, *args):
        """A statement through SQLAlchemy, which reads its answer at once: after a sync."""
        self._sync()
        return self.db.execute(*args)

    def _upsert(self, table: sa.Table, values: dict, keys: list[str]) -> None:
        """SQLite (PostgreSQL's writes are the driver's statements)."""
        insert = sqlite.insert(table).values(**values)
        changes = {k: v for k, v in values.items() if k not in keys}
        self._execute(insert.on_conflict_do_update(index_elements=keys, set_=changes))

    def _advisory_locks(self, space: int, names: list[str]) -> None:
        """PostgreSQL: taken in the order of ``names``, sent and not waited for (the
        next statement waited for has waited for the locks too). SQLite: one writer."""
        if self.d is not None and names:
            self._send(self.d.advisory_locks, {"space": space, "names": names})

    # Event log.
    def record_event(self, **fields) -> Event | None:
        return self.record_events([fields])[0]

    def record_events(self, rows: list[dict[str, Any]]) -> list[Event | None]:
        fresh: dict[tuple[str, str], dict] = {}  # the first of a repeated id is the one recorded
        for row in rows:
            fresh.setdefault((row["source"], row["event_id"]), _event_row(**row))
        # One INSERT of every row (SQLAlchemy's "insertmanyvalues"); a row already
        # recorded comes back as nothing, so the ids are matched by (source, event_id).
        params = list(fresh.values())
        if self.d is not None:
            ids = dict(zip(((p["source"], p["event_id"]) for p in params), self._record_on_driver(params)))
        else:
            result = self._execute(self.q.record_event, params[0] if len(params) == 1 else params)
            ids = {(source, event_id): pk for pk, source, event_id in result}
        answers = []
        for row in rows:
            key = (row["source"], row["event_id"])
            pk = ids.pop(key, None)  # popped: a repeat of the id in this call is None
            answers.append(None if pk is None else Event(id=pk, **_event_fields(fresh[key])))
        return answers

    def _record_on_driver(self, params: list[dict[str, Any]]) -> list[int | None]:
        """The id of each row recorded, None for each already there."""
        cursor = self._send(self.d.record_event, many=[{**p, "data": _jsonb(p["data"])} for p in params],
                            returning=True)
        pks = []
        with self._driver_errors():
            for _ in params:
                row = cursor.fetchone()
                pks.append(row[0] if row else None)
                cursor.nextset()
        return pks

    def get_event(self, event_pk: int) -> Event | None:
        return _event(self._execute(self.q.select_event, {"id": event_pk}).first())

    def find_event(self, source: str, event_id: str) -> Event | None:
        query = sa.select(t.events).where(t.events.c.source == source, t.events.c.event_id == event_id)
        return _event(self._execute(query).first())

    def update_event(self, event_pk: int, **fields: Any) -> None:
        if self.d is not None:
            self._send(statements.update_event(tuple(sorted(fields))), {**fields, "event_pk": event_pk})
            return
        self._execute(sa.update(t.events).where(t.events.c.id == event_pk).values(**fields))

    def list_events(self, *, source=None, status=None, since=None, limit=100) -> list[Event]:
        c = t.events.c
        query = sa.select(t.events).order_by(c.id.desc()).limit(limit)
        for column, value in ((c.source, source), (c.status, status)):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(c.received_at >= since)
        return [_event(row) for row in self._execute(query)]

    def claim_due_events(self, *, now, stale_before, lease_until, limit) -> list[Event]:
        c = t.events.c
        not_leased = sa.or_(c.next_attempt_at.is_(None), c.next_attempt_at <= now)
        query = sa.select(c.id).where(sa.or_(
            sa.and_(c.status == "deferred", not_leased),
            sa.and_(c.status == "received", c.received_at < stale_before, not_leased),
        )).order_by(c.id).limit(limit)
        if self.postgres:  # concurrent workers skip each other's rows instead of waiting
            query = query.with_for_update(skip_locked=True)
        ids = list(self._execute(query).scalars())
        if ids:
            self._execute(sa.update(t.events).where(c.id.in_(ids)).values(next_attempt_at=lease_until))
        return [self.get_event(event_pk) for event_pk in ids]

    # Evidence.
    def link_event(self, event_pk: int, keys: list[tuple[str, str]]) -> None:
        self.link_events([(event_pk, keys)])

    def link_events(self, links: list[tuple[int, list[tuple[str, str]]]]) -> None:
        rows = [{"event_pk": event_pk, "source": source, "key": key}
                for event_pk, keys in links for source, key in sorted(set(keys))]
        if rows and self.d is not None:
            self._send(self.d.link_event, many=rows)
        elif rows:
            self._execute(self.q.link_event, rows)

    def event_links(self, event_pks: list[int]) -> dict[int, list[tuple[str, str]]]:
        c = t.event_subscriptions.c
        links: dict[int, list[tuple[str, str]]] = {pk: [] for pk in event_pks}
        if event_pks:
            query = sa.select(c.event_pk, c.source, c.key).where(c.event_pk.in_(list(event_pks)))
            for row in self._execute(query.order_by(c.event_pk, c.source, c.key)):
                links[row.event_pk].append((row.source, row.key))
        return links

    def events_touching(self, keys, *, before_pk=None, limit=100) -> list[Event]:
        if not keys:
            return []
        c = t.event_subscriptions.c
        touching = sa.select(c.event_pk).where(sa.tuple_(c.source, c.key).in_(list(keys)))
        query = sa.select(t.events).where(t.events.c.id.in_(touching))
        if before_pk is not None:
            query = query.where(t.events.c.id < before_pk)
        return [_event(row) for row in self._execute(query.order_by(t.events.c.id.desc()).limit(limit))]

    def search_events(self, *, source=None, status=None, event_type=None, since=None, until=None,
                      before_pk=None, limit=50) -> list[Event]:
        c = t.events.c
        query = sa.select(t.events).order_by(c.id.desc()).limit(limit)
        for column, value in ((c.source, source), (c.status, status), (c.event_type, event_type)):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(c.received_at >= since)
        if until is not None:
            query = query.where(c.received_at < until)
        if before_pk is not None:
            query = query.where(c.id < before_pk)
        return [_event(row) for row in self._execute(query)]

    def count_events(self, statuses) -> dict[tuple[str, str], int]:
        c = t.events.c
        query = (sa.select(c.source, c.status, sa.func.count()).where(c.status.in_(list(statuses)))
                 .group_by(c.source, c.status))
        return {(source, status): n for source, status, n in self._execute(query)}

    # Subscriptions.
    def lock_subscription(self, source: str, key: str) -> Subscription | None:
        if self.d is None:
            return self.get_subscription(source, key)
        # An existing row is locked by FOR UPDATE. A row that does not exist yet cannot be,
        # so its creators queue on an advisory lock, then lock the row as the first one
        # creates it: every writer of a subscription ends up serialized on its row.
        found = self._locked(source, key)
        if found is None:
            self._advisory_locks(_SUBSCRIPTION_LOCK, [f"{source}:{key}"])
            found = self._locked(source, key)
        return found

    def _locked(self, source: str, key: str) -> Subscription | None:
        rows = self._rows(self.d.lock_subscription, {"source": source, "key": key})
        return _subscription(rows[0] if rows else None)

    def lock_subscriptions(self, keys) -> dict[tuple[str, str], Subscription | None]:
        keys = sorted(set(keys))
        if len(keys) == 1:
            return {keys[0]: self.lock_subscription(*keys[0])}
        # As lock_subscription, for all at once: the rows that exist, locked in key
        # order; then the advisory locks of those that do not, in key order; then those
        # rows, which a writer that held the advisory lock first may have created.
        found = {(s.snapshot.source, s.snapshot.key): s for s in map(_subscription, self._keyed_rows(keys))}
        missing = [key for key in keys if key not in found]
        if missing and self.d is not None:
            self._advisory_locks(_SUBSCRIPTION_LOCK, [f"{source}:{key}" for source, key in missing])
            found.update({(s.snapshot.source, s.snapshot.key): s
                          for s in map(_subscription, self._keyed_rows(missing))})
        return {key: found.get(key) for key in keys}

    def _keyed_rows(self, keys: list[tuple[str, str]]):
        """The rows of these subscriptions, in key order; locked on PostgreSQL."""
        if self.d is not None:
            return self._rows(self.d.lock_subscriptions, _pairs(keys))
        return self._execute(self.q.select_subscriptions, {"keys": keys})

    def get_subscription(self, source: str, key: str) -> Subscription | None:
        return _subscription(self._execute(self.q.select_subscription, {"source": source, "key": key}).first())

    def save_subscription(self, subscription: Subscription, now: datetime) -> None:
        self.save_subscriptions([subscription], now)

    def save_subscriptions(self, subscriptions: list[Subscription], now: datetime) -> None:
        rows = [_subscription_row(s, now) for s in subscriptions]
        if rows and self.d is not None:
            self._send(self.d.upsert_subscription, many=[
                {**row, "entitlement_names": _jsonb(row["entitlement_names"]),
                 "revocations": _jsonb(row["revocations"])} for row in rows])
        elif rows:  # several rows: one multi-row INSERT (see statements._upsert)
            self._execute(self.q.upsert_subscription, rows)

    def subscriptions_of(self, user_sub: str) -> list[Subscription]:
        return [_subscription(row) for row in self._execute(self.q.subscriptions_of, {"user_sub": user_sub})]

    def subscriptions_of_users(self, user_subs: list[str]) -> dict[str, list[Subscription]]:
        if self.d is not None:
            rows = self._rows(self.d.subscriptions_of_users, {"user_subs": list(user_subs)})
        elif len(user_subs) == 1:
            return {user_subs[0]: self.subscriptions_of(user_subs[0])}
        else:
            rows = self._execute(self.q.subscriptions_of_users, {"user_subs": list(user_subs)})
        held: dict[str, list[Subscription]] = {user_sub: [] for user_sub in user_subs}
        for row in rows:
            held[row.user_sub].append(_subscription(row))
        return held

    def lock_held_by(self, source, accounts, owners) -> list[Subscription]:
        params = {"source": source, "accounts": list(accounts), "owners": list(owners)}
        if self.d is not None:  # locked in the order the query returns them: key order
            return [_subscription(row) for row in self._rows(self.d.lock_held_by, params)]
        return [_subscription(row) for row in self._execute(self.q.held_by, params)]

    def subscriptions_to_reconcile(self, source, expires_from, expires_to, limit=10_000) -> list[Subscription]:
        c = t.subscriptions.c
        unsettled = sa.and_(sa.or_(c.user_sub.is_(None), c.status == "pending"),
                            sa.or_(c.expires_at.is_(None), c.expires_at >= expires_from))
        query = sa.select(t.subscriptions).where(c.source == source, sa.or_(
            unsettled, c.expires_at.between(expires_from, expires_to),
        )).order_by(c.key).limit(limit)
        return [_subscription(row) for row in self._execute(query)]

    # Identities.
    def resolve(self, source: str, account: str) -> str | None:
        if self.d is not None:
            rows = self._rows(self.d.resolve, {"source": source, "account": account})
            return rows[0].user_sub if rows else None
        c = t.identities.c
        query = sa.select(c.user_sub).where(c.source == source, c.account == account)
        return self._execute(query).scalar()

    def link(self, source: str, account: str, user_sub: str, as_of, now: datetime) -> str:
        values = {"source": source, "account": account, "user_sub": user_sub, "as_of": as_of, "created_at": now}
        if self.d is not None:  # one atomic statement; a second only when the held link won
            rows = self._rows(self.d.link_identity, values)
            return rows[0].user_sub if rows else self.resolve(source, account)
        c = t.identities.c  # SQLite: one writer at a time, so read, compare and write
        held = self._execute(sa.select(c.user_sub, c.as_of).where(
            c.source == source, c.account == account)).first()
        if held is None or link_claim(as_of, user_sub) > link_claim(_utc(held.as_of), held.user_sub):
            self._upsert(t.identities, values, ["source", "account"])
            return user_sub
        return held.user_sub

    def lock_accounts(self, accounts: list[tuple[str, str]]) -> None:
        self._advisory_locks(_ACCOUNT_LOCK, sorted({f"{source}:{account}" for source, account in accounts}))

    # Entitlements.
    def lock_users(self, user_subs: list[str]) -> None:
        self._advisory_locks(_USER_LOCK, sorted(set(user_subs)))

    def replace_entitlements(self, user_sub: str, grants: list[Grant], now: datetime) -> None:
        if self.d is not None:
            self.replace_entitlements_of({user_sub: grants}, now)
            return
        names = [g.name for g in grants]
        rows = [_grant_row(user_sub, g, now) for g in grants]
        self._execute(self.q.stale_entitlements, {"owner": user_sub, "keep": names})
        if rows:
            self._execute(self.q.upsert_entitlement, rows)

    def replace_entitlements_of(self, grants: dict[str, list[Grant]], now: datetime) -> None:
        if self.d is None and len(grants) <= 1:
            for user_sub, granted in grants.items():
                self.replace_entitlements(user_sub, granted, now)
            return
        keep = [(user_sub, g.name) for user_sub, granted in grants.items() for g in granted]
        rows = [_grant_row(user_sub, g, now) for user_sub, granted in grants.items() for g in granted]
        if self.d is not None:  # both sent, neither waited for
            self._send(self.d.stale_entitlements, {"owners": list(grants), **_pairs(keep)})
            if rows:
                self._send(self.d.upsert_entitlement, many=rows)
            return
        self._execute(self.q.stale_entitlements_of, {"owners": list(grants), "keep": keep})
        if rows:
            self._execute(self.q.upsert_entitlement, rows)

    def entitlements_of(self, user_sub: str) -> list[Grant]:
        params = {"user_sub": user_sub}
        if self.d is not None:  # the read every app launch makes: SQLAlchemy's layers cost more than the query
            rows = self._rows(self.d.select_entitlements, params, named=False)
        else:
            rows = self._execute(self.q.select_entitlements, params)
        return _grants(rows)


def _grants(rows) -> list[Grant]:
    return [Grant(name=name, status=Status(status), expires_at=_utc(expires_at), will_renew=will_renew,
                  source=source, product_id=product_id, subscription_key=subscription_key)
            for name, status, expires_at, will_renew, source, product_id, subscription_key in rows]


def _pairs(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """A list of pairs as the two arrays a driver statement unnests together."""
    return {"firsts": [a for a, _ in pairs], "seconds": [b for _, b in pairs]}


def _jsonb(value):
    """A JSON column's value for the driver: SQL NULL for None, as SQLAlchemy reads it back."""
    return None if value is None else Jsonb(value)


def _event(row) -> Event | None:
    if row is None:
        return None
    return Event(id=row.id, source=row.source, event_id=row.event_id, event_type=row.event_type,
                 received_at=_utc(row.received_at), payload=row.payload, data=row.data,
                 status=row.status, attempts=row.attempts, last_error=row.last_error,
                 processed_at=_utc(row.processed_at), next_attempt_at=_utc(row.next_attempt_at))


def _event_row(*, source, event_id, event_type, received_at, payload, data, status="received",
               processed_at=None, last_error=None) -> dict[str, Any]:
    return {"source": source, "event_id": event_id, "event_type": event_type, "received_at": received_at,
            "payload": payload, "data": data, "status": status, "attempts": 0 if status == "received" else 1,
            "processed_at": processed_at, "last_error": last_error, "next_attempt_at": None}


def _event_fields(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k in _EVENT_FIELDS}


_EVENT_FIELDS = {f.name for f in dataclasses.fields(Event)} - {"id"}


def _grant_row(user_sub: str, g: Grant, now: datetime) -> dict[str, Any]:
    return {"user_sub": user_sub, "name": g.name, "status": g.status.value, "expires_at": g.expires_at,
            "will_renew": g.will_renew, "source": g.source, "product_id": g.product_id,
            "subscription_key": g.subscription_key, "updated_at": now}


def _subscription_row(subscription: Subscription, now: datetime) -> dict[str, Any]:
    s = subscription.latest
    return {
        "source": s.source, "key": s.key, "user_sub": subscription.owner,
        "owner_as_of": subscription.owner_as_of, "account": s.account,
        "account_as_of": subscription.account_as_of,
        "product_id": s.product_id, "status": s.status.value, "raw_status": s.raw_status,
        "expires_at": s.expires_at, "will_renew": s.will_renew, "environment": s.environment,
        "entitlement_names": list(s.entitlements) if s.entitlements is not None else None,
        "revocations": _revocations_json(subscription.revocations),
        "as_of": s.as_of, "updated_at": now,
    }


def _revocations_json(revocations: Revocations) -> dict | None:
    if revocations == NO_REVOCATIONS:
        return None
    return {"taken": sorted([cause, end.isoformat() if end else None] for cause, end in revocations.taken),
            "given_back": sorted(revocations.given_back)}


def _revocations(value: dict | None) -> Revocations:
    if not value:
        return NO_REVOCATIONS
    return Revocations(
        frozenset((cause, _utc(datetime.fromisoformat(end)) if end else None) for cause, end in value["taken"]),
        frozenset(value["given_back"]))


def _subscription(row) -> Subscription | None:
    if row is None:
        return None
    names = row.entitlement_names
    snapshot = Snapshot(
        source=row.source, key=row.key, as_of=_utc(row.as_of), status=Status(row.status),
        product_id=row.product_id, expires_at=_utc(row.expires_at), will_renew=row.will_renew,
        user_sub=None, account=row.account, environment=row.environment,
        raw_status=row.raw_status, entitlements=tuple(names) if names is not None else None,
    )
    return Subscription(snapshot, owner=row.user_sub, owner_as_of=_utc(row.owner_as_of),
                        account_as_of=_utc(row.account_as_of), revocations=_revocations(row.revocations))
