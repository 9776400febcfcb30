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


def renew(store, user: str, ends: datetime, now: datetime) -> None:
    snapshot = Snapshot(source="stripe", key=f"sub_{user}", as_of=now, status=Status.ACTIVE, product_id="price_m",
                        expires_at=ends, will_renew=True, user_sub=user, entitlements=("premium",))
    with store.transaction() as tx:
        apply_translation(tx, Translation(snapshots=(snapshot,)), Catalog(products={}), now)


def test_the_expiry_sweep_and_a_late_renewal_racing_tell_one_story(store):
    """Released together: the sweep reports the lapse and the renewal grants again, or the
    renewal comes first and nothing lapses. Never a lapse reported after the renewal, nor a
    renewal of what the feed had already called expired."""
    from gateway.jobs.expiry import ExpirySweep

    rounds, stories = 36, {}
    with store.transaction() as tx:  # the clock is made with the database's own time: set it back to the test's
        tx.take_feed_positions(0)
        tx.append_feed([], expiries_through=NOW - timedelta(seconds=1))
    for n in range(rounds):
        user, start = f"racer{n}", NOW + timedelta(days=n)
        end = start + timedelta(days=30)
        renew(store, user, end, start)
        with store.transaction() as tx:  # the sweep's mark just before the end
            tx.take_feed_positions(0)
            tx.append_feed([], expiries_through=end - timedelta(seconds=1))
        after_end = end + timedelta(seconds=1)
        barrier = threading.Barrier(2)
        # Each side is given a head start in turn, and then neither: both orders happen.
        sweep_waits, renewal_waits = [(0, 0.01), (0.01, 0), (0, 0)][n % 3]

        def sweep() -> None:
            barrier.wait()
            time.sleep(sweep_waits)
            ExpirySweep(store, clock=lambda: after_end).run_once()

        def renewal() -> None:
            barrier.wait()
            time.sleep(renewal_waits)
            renew(store, user, end + timedelta(days=30), after_end)

        threads = [threading.Thread(target=sweep), threading.Thread(target=renewal)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        with store.transaction(readonly=True) as tx:
            stories[user] = tuple(e.type.removeprefix("entitlement.") for e in tx.read_feed(0, 1000, user))
    allowed = {("granted", "renewed"), ("granted", "expired", "granted")}
    assert set(stories.values()) <= allowed, stories
    assert len(set(stories.values())) == 2, stories  # the race went both ways
