"""The embedded SQLite store (``make run``, the tests).

Serialization: SQLite has one writer at a time. Every writing transaction starts with
BEGIN IMMEDIATE, so it holds the database until it ends and needs no lock of its own;
readers (plain BEGIN, in WAL mode) do not wait for it. Every statement goes through
SQLAlchemy; a list of rows is one multi-row INSERT.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from gateway.domain.entitlements import Grant
from gateway.domain.model import Subscription, link_claim

from . import rows, statements
from .sql_base import SqlStore, SqlTransaction


def engine(url: str) -> sa.Engine:
    database = sa.engine.make_url(url).database
    if database and database != ":memory:":
        os.makedirs(os.path.dirname(os.path.abspath(database)), exist_ok=True)
    created = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @sa.event.listens_for(created, "connect")
    def _configure(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @sa.event.listens_for(created, "begin")
    def _begin(connection):
        readonly = connection.get_execution_options().get("gateway_readonly")
        connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

    return created


class SqliteStore(SqlStore):
    create_engine = staticmethod(engine)

    def _connect(self, readonly: bool) -> sa.Connection:
        connection = self.engine.connect()
        # A read-only transaction: a deferred BEGIN (a snapshot that waits for no writer).
        return connection.execution_options(gateway_readonly=True) if readonly else connection

    def _opened(self, connection: sa.Connection, readonly: bool) -> contextlib.AbstractContextManager[SqliteTransaction]:
        return contextlib.nullcontext(SqliteTransaction(connection))


class SqliteTransaction(SqlTransaction):
    def __init__(self, connection: sa.Connection) -> None:
        super().__init__(connection)
        self.sql = statements.for_sqlite()

    # Event log.
    def _send_events(self, inserted: list[dict[str, Any]]) -> Callable[[], dict[tuple[str, str], int]]:
        # One INSERT of every row (SQLAlchemy's "insertmanyvalues"), answered at once; a row
        # already recorded comes back as nothing, so the ids are matched by (source, event_id).
        result = self._execute(self.sql.record_event, inserted[0] if len(inserted) == 1 else inserted)
        ids = {(source, event_id): pk for pk, source, event_id in result}
        return lambda: ids

    def update_event(self, event_pk: int, **fields: Any) -> None:
        self._execute(statements.update_event(tuple(sorted(fields))), {**fields, "event_pk": event_pk})

    def update_claimed_event(self, event_pk: int, claim, **fields: Any) -> bool:
        statement = statements.update_claimed_event(tuple(sorted(fields)))
        return self._execute(statement, {**fields, "event_pk": event_pk, "claim": claim}).first() is not None

    def link_events(self, links: list[tuple[int, list[tuple[str, str]]]]) -> None:
        linked = [{"event_pk": event_pk, "source": source, "key": key}
                  for event_pk, keys in links for source, key in sorted(set(keys))]
        if linked:
            self._execute(self.sql.link_event, linked)

    # Subscriptions: read, not locked (one writer at a time).
    def lock_subscriptions(self, keys) -> dict[tuple[str, str], Subscription | None]:
        keys = sorted(set(keys))
        if len(keys) == 1:
            return {keys[0]: self.get_subscription(*keys[0])}
        found = map(rows.subscription, self._execute(self.sql.select_subscriptions, {"keys": keys}))
        by_key = {(s.snapshot.source, s.snapshot.key): s for s in found}
        return {key: by_key.get(key) for key in keys}

    def save_subscriptions(self, subscriptions: list[Subscription], now) -> None:
        written = [rows.subscription_row(s, now) for s in subscriptions]
        if written:  # several rows: one multi-row INSERT (see statements._upsert)
            self._execute(self.sql.upsert_subscription, written)

    def subscriptions_of_users(self, user_subs: list[str]) -> dict[str, list[Subscription]]:
        held: dict[str, list[Subscription]] = {user_sub: [] for user_sub in user_subs}
        for row in self._execute(self.sql.subscriptions_of_users, {"user_subs": list(user_subs)}):
            held[row.user_sub].append(rows.subscription(row))
        return held

    def lock_held_by(self, source, accounts, owners) -> list[Subscription]:
        params = {"source": source, "accounts": list(accounts), "owners": list(owners)}
        return [rows.subscription(row) for row in self._execute(self.sql.held_by, params)]

    # Identities.
    def resolve(self, source: str, account: str) -> str | None:
        held = self._execute(self.sql.select_identity, {"source": source, "account": account}).first()
        return held.user_sub if held else None

    def link(self, source: str, account: str, user_sub: str, as_of, now) -> str | None:
        # One writer at a time: read, compare and write.
        held = self._execute(self.sql.select_identity, {"source": source, "account": account}).first()
        if self.deleted_among([user_sub]):  # a deleted user is linked to nothing
            return held.user_sub if held else None
        if held is None or link_claim(as_of, user_sub) > link_claim(rows.utc(held.as_of), held.user_sub):
            self._execute(self.sql.upsert_identity, rows.identity_row(source, account, user_sub, as_of, now))
            return user_sub
        return held.user_sub

    # Entitlements.
    def lock_users(self, user_subs: list[str]) -> None:
        pass  # one writer at a time

    def replace_entitlements_of(self, grants: dict[str, list[Grant]], now) -> None:
        keep = [(user_sub, g.name) for user_sub, granted in grants.items() for g in granted]
        written = [rows.grant_row(user_sub, g, now) for user_sub, granted in grants.items() for g in granted]
        self._execute(self.sql.stale_entitlements, {"owners": list(grants), "keep": keep})
        if written:
            self._execute(self.sql.upsert_entitlement, written)

    def entitlements_of(self, user_sub: str) -> list[Grant]:
        return rows.grants(self._execute(self.sql.select_entitlements, {"user_sub": user_sub}))
