"""0022 stamps each App Store refund recorded before it with the row's ``as_of`` (the newest
view stored, no earlier than any view that showed the refund): a view signed after that
gives the period back if it no longer shows the refund, an older one never does. On SQLite
and PostgreSQL. Catches the migration doing nothing (the refund stays final: the newer view
still reads revoked) and a stamp earlier than the row's ``as_of`` (a view showing a
transaction signed before the newest view stored gives the period back)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from gateway.apply import apply_translation
from gateway.domain.catalog import Catalog
from gateway.domain.changes import Translation
from gateway.domain.model import Snapshot, Status
from gateway.store import tables
from gateway.store.migrate import downgrade, upgrade
from gateway.store.sql import sql_store

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
END = T0 + timedelta(days=30)


def _row(source: str, key: str, status: str, as_of: datetime, cause: str) -> dict:
    return {"source": source, "key": key, "user_sub": "alice", "account": key, "product_id": "monthly",
            "status": status, "expires_at": END, "will_renew": False, "period_id": "t1", "as_of": as_of,
            "derived_as_of": as_of, "updated_at": as_of,
            "revocations": {"taken": [[cause, END.isoformat(), "t1"]], "given_back": []}}


def _view(key: str, at: datetime, signed: datetime | None = None) -> Snapshot:
    return Snapshot("apple", key, at, Status.ACTIVE, "monthly", END, True, account=key, period_id="t1",
                    shown_as_of=signed or at)


def _apply(store, snapshot: Snapshot) -> None:
    with store.transaction() as tx:
        apply_translation(tx, Translation(snapshots=(snapshot,)), Catalog(products={}), snapshot.as_of)


def _state(store, source: str, key: str):
    with store.transaction() as tx:
        (held,) = tx.lock_subscriptions([(source, key)]).values()
        return held


def test_0022_stamps_app_store_refunds_with_the_newest_view_stored(database_url):
    downgrade(database_url, "0021")
    try:
        engine = sa.create_engine(database_url)
        with engine.begin() as connection:
            connection.execute(sa.insert(tables.subscriptions), [
                # The newest view stored lacks the refund (the old rule kept it revoked).
                _row("apple", "1000", "active", T0 + timedelta(hours=1), "refunded:t1"),
                _row("apple", "2000", "revoked", T0, "refunded:t1"),  # the newest view shows it
                _row("stripe", "sub_1", "active", T0, "refunded:in_1"),  # not the App Store's
            ])
        engine.dispose()
    finally:
        upgrade(database_url)
    store = sql_store(database_url)
    try:
        assert _state(store, "apple", "1000").revocations.shown == {("refunded:t1", T0 + timedelta(hours=1))}
        assert _state(store, "apple", "2000").revocations.shown == {("refunded:t1", T0)}
        assert _state(store, "stripe", "sub_1").revocations.shown == frozenset()
        assert _state(store, "apple", "1000").snapshot.status is Status.REVOKED
        # Notified later, but showing the transaction as signed before the newest view stored.
        _apply(store, _view("1000", T0 + timedelta(hours=2), signed=T0 + timedelta(minutes=30)))
        assert _state(store, "apple", "1000").snapshot.status is Status.REVOKED
        for key, later in (("1000", T0 + timedelta(hours=3)), ("2000", T0 + timedelta(minutes=1))):
            _apply(store, _view(key, later))
            assert _state(store, "apple", key).snapshot.status is Status.ACTIVE, key
    finally:
        store.engine.dispose()
