"""The feed's order on the SQL store: a position is visible only after every smaller one."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from gateway.apply import apply_translation
from gateway.domain.catalog import Catalog
from gateway.domain.changes import Translation
from gateway.domain.model import Snapshot, Status
from gateway.store.sql import sql_store

NOW = datetime(2026, 11, 2, tzinfo=timezone.utc)


@pytest.fixture
def store(database_url):
    store = sql_store(database_url)
    yield store
    store.engine.dispose()


def grant(tx, user: str) -> None:
    snapshot = Snapshot(source="stripe", key=f"sub_{user}", as_of=NOW, status=Status.ACTIVE, product_id="price_m",
                        expires_at=NOW + timedelta(days=30), will_renew=True, user_sub=user,
                        entitlements=("premium",))
    apply_translation(tx, Translation(snapshots=(snapshot,)), Catalog(products={}), NOW)


def read(store, after: int) -> list[int]:
    with store.transaction(readonly=True) as tx:
        return [event.position for event in tx.read_feed(after, 100)]


def test_an_event_numbered_after_an_uncommitted_one_waits_for_it(store):
    """The first writer holds its numbered event uncommitted; the second must not commit a
    later number meanwhile, or a reader passes the first by and never sees it."""
    numbered, release = threading.Event(), threading.Event()
    second_done = threading.Event()

    def first() -> None:
        with store.transaction() as tx:
            grant(tx, "ann")
            numbered.set()
            release.wait(10)

    def second() -> None:
        numbered.wait(10)
        with store.transaction() as tx:
            grant(tx, "bea")
        second_done.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    numbered.wait(10)
    time.sleep(0.5)  # the second writer has had every chance to commit
    seen = read(store, 0)  # a reader meanwhile: nothing, since nothing has committed
    cursor = max(seen, default=0)
    assert not second_done.is_set(), "a later event committed while an earlier number was pending"
    release.set()
    for thread in threads:
        thread.join(10)
    seen += read(store, cursor)
    assert seen == [1, 2]
    with store.transaction(readonly=True) as tx:
        assert [e.user_id for e in tx.read_feed(0, 10)] == ["ann", "bea"]
