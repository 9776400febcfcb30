"""Deliveries arriving together share one transaction (group commit), on the test database.

The gateway's Ingest on the SQL store, fed from many threads at once as gunicorn's threads
would. The store is the real one; the only addition is a gate that holds the first write
transaction for a moment, so that the other deliveries queue behind it and go as a batch.
"""
from __future__ import annotations

import contextlib
import logging
import random
import threading
from datetime import datetime, timedelta, timezone

import pytest

from devtools import revenuecat as rc
from gateway.accounts import AccountDeletion, StoreApis
from gateway.domain.catalog import Catalog
from gateway.ingest import Ingest
from gateway.jobs import retry
from gateway.providers.revenuecat_events import RevenueCatEvents
from gateway.store.port import Store
from gateway.store.sql import sql_store
from tests.support.events import find_event

CATALOG = Catalog(products={})
HEADERS = {"Authorization": rc.AUTH}
BASE_MS = 1_900_000_000_000


class GatedStore(Store):
    """The SQL store; its first write transaction waits for ``gate``; counts writes."""

    def __init__(self, store, gate: threading.Event, poison: str | None = None) -> None:
        self.store, self.engine = store, store.engine
        self.gate, self.poison, self.writes = gate, poison, 0

    @contextlib.contextmanager
    def transaction(self, readonly: bool = False):
        if not readonly:
            self.writes += 1
            self.gate.wait(10)
        with self.store.transaction(readonly) as tx:
            if self.poison and not readonly:
                tx = _Refusing(tx, self.poison)
            yield tx


class _Refusing:
    """A transaction that cannot write one subscription, as a constraint might refuse it."""

    def __init__(self, tx, key: str) -> None:
        self._tx, self._key = tx, key

    def save_subscriptions(self, subscriptions, now):
        if any(s.snapshot.key == self._key for s in subscriptions):
            raise RuntimeError(f"cannot write {self._key}")
        return self._tx.save_subscriptions(subscriptions, now)

    def __getattr__(self, name):
        return getattr(self._tx, name)


@pytest.fixture
def world(database_url):
    gate = threading.Event()
    stores = []

    def build(poison=None):
        store = GatedStore(sql_store(database_url), gate, poison)
        stores.append(store)
        return store, Ingest(store, CATALOG)

    yield gate, build
    for store in stores:
        store.engine.dispose()


def send_all(ingest, bodies, gate):
    provider = RevenueCatEvents((rc.AUTH,), CATALOG)
    answers: dict[int, str] = {}
    errors = []

    def send(n):
        try:
            answers[n] = ingest.receive(provider, bodies[n], HEADERS)
        except Exception as exc:  # collected: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(len(bodies))]
    for thread in threads:
        thread.start()
    threading.Timer(0.5, gate.set).start()  # by then every thread has queued behind the first
    for thread in threads:
        thread.join(timeout=30)
    assert errors == [] and len(answers) == len(bodies)
    return [answers[n] for n in range(len(bodies))]


def test_concurrent_deliveries_share_transactions_and_end_as_if_applied_one_by_one(world):
    gate, build = world
    store, ingest = build()
    # Three users, eight deliveries each in shuffled order; the newest of each decides.
    kinds = ["INITIAL_PURCHASE", "RENEWAL", "CANCELLATION", "UNCANCELLATION", "RENEWAL", "BILLING_ISSUE",
             "RENEWAL", "EXPIRATION"]
    events = []
    for user in ("ann", "bea", "cid"):
        for n, kind in enumerate(kinds):
            extra = {"aliases": [user]} if n % 2 else {}  # with and without an anonymous alias to link
            events.append(rc.event(kind, user=f"group-{user}", transaction=f"tx-{user}",
                                   at_ms=BASE_MS + n * 1000, **extra))
    random.shuffle(events)
    resent = events[:4]  # a retry racing its original
    answers = send_all(ingest, [rc.body(e) for e in events + resent], gate)

    assert store.writes < len(events)  # batched: fewer transactions than deliveries
    assert answers[:len(events)].count("processed") + answers[len(events):].count("processed") == len(events)
    assert sorted(answers).count("duplicate") == len(resent)
    with store.transaction(readonly=True) as tx:
        recorded = tx.search_events(limit=100)
        links = tx.event_links([e.id for e in recorded])
        for user in ("ann", "bea", "cid"):
            subscription = tx.get_subscription("revenuecat", f"tx-{user}")
            assert subscription.snapshot.raw_status == "EXPIRATION"  # the newest, whatever the order
            assert subscription.owner == f"group-{user}"
            (grant,) = tx.entitlements_of(f"group-{user}")
            assert grant.status.value == "expired"
    assert len(recorded) == len(events) and {e.status for e in recorded} == {"processed"}
    assert all(links[e.id] for e in recorded)  # every delivery's evidence, as when alone


def test_a_delivery_that_cannot_be_applied_does_not_hold_back_its_batch(world, caplog):
    gate, build = world
    store, ingest = build(poison="tx-poison")
    caplog.set_level(logging.INFO, logger="gateway.ingest")
    events = [rc.event("INITIAL_PURCHASE", user=f"batch-{n}", transaction=f"tx-{n}", at_ms=BASE_MS)
              for n in range(6)]
    events.insert(3, rc.event("INITIAL_PURCHASE", user="batch-poison", transaction="tx-poison", at_ms=BASE_MS))
    answers = send_all(ingest, [rc.body(e) for e in events], gate)

    assert "applying deliveries together failed; applying each alone" in caplog.messages
    assert answers[3] == "deferred"  # recorded, for the retry worker
    assert answers[:3] + answers[4:] == ["processed"] * 6
    with store.transaction(readonly=True) as tx:
        assert all(tx.entitlements_of(f"batch-{n}") for n in range(6))
        assert tx.entitlements_of("batch-poison") == []
        deferred = find_event(tx, "revenuecat", events[3]["id"])
    assert deferred.status == "deferred" and "cannot write tx-poison" in deferred.last_error


def with_email(event: dict, email: str) -> dict:
    return {**event, "subscriber_attributes": {"$email": {"value": email, "updated_at_ms": 1}}}


def bought_then_deleted(store, ingest, deleted: str, kept: str) -> None:
    """Both users buy (with their email), then ``deleted`` deletes the account."""
    provider = RevenueCatEvents((rc.AUTH,), CATALOG)
    for user in (deleted, kept):
        bought = rc.event("INITIAL_PURCHASE", user=user, transaction=f"tx-{user}", at_ms=BASE_MS, aliases=[user])
        assert ingest.receive(provider, rc.body(with_email(bought, f"{user}@example.com")), HEADERS) == "processed"
    AccountDeletion(store, StoreApis(), lambda: datetime.now(timezone.utc)).delete(deleted)


def test_a_deleted_users_late_deliveries_are_erased_in_their_batch_and_the_others_kept_whole(world):
    gate, build = world
    store, ingest = build()
    gate.set()
    bought_then_deleted(store, ingest, "gone", "kept")
    gate.clear()
    events = [with_email(rc.event(kind, user=user, transaction=f"tx-{user}", at_ms=BASE_MS + at, aliases=[user]),
                         f"{user}@example.com")
              for user in ("gone", "kept") for kind, at in (("RENEWAL", 2000), ("CANCELLATION", 1000))]
    answers = send_all(ingest, [rc.body(e) for e in events], gate)  # the second of each changes nothing

    assert store.writes < len(events) + 3 and answers == ["processed"] * 4
    with store.transaction(readonly=True) as tx:
        stored = [find_event(tx, "revenuecat", e["id"]) for e in events]
        assert tx.entitlements_of("gone") == [] and tx.entitlements_of("kept") != []
    for late in stored[:2]:
        assert "gone@example.com" not in late.payload and late.data["subscriber_attributes"]["$email"] == "[redacted]"
    for other in stored[2:]:
        assert "kept@example.com" in other.payload and other.data["subscriber_attributes"]["$email"]["value"]


def test_a_late_delivery_that_fails_alone_is_erased_when_the_retry_worker_applies_it(world):
    # The one-transaction path fails (the database refuses the write): recorded as it came,
    # deferred; the retry worker applies it in two steps, and erases it there.
    gate, build = world
    gate.set()
    store, ingest = build(poison="tx-gone")
    bought_then_deleted(store, build()[1], "gone", "kept")
    late = with_email(rc.event("RENEWAL", user="gone", transaction="tx-gone", at_ms=BASE_MS + 1000), "gone@example.com")
    assert ingest.receive(RevenueCatEvents((rc.AUTH,), CATALOG), rc.body(late), HEADERS) == "deferred"
    with store.transaction(readonly=True) as tx:
        assert "gone@example.com" in find_event(tx, "revenuecat", late["id"]).payload

    later = datetime.now(timezone.utc) + timedelta(days=1)  # past any backoff
    worker = Ingest(build()[0], CATALOG, clock=lambda: later)
    assert retry.retry_due(worker, {"revenuecat": RevenueCatEvents((rc.AUTH,), CATALOG)}) == {"processed": 1}

    with store.transaction(readonly=True) as tx:
        applied = find_event(tx, "revenuecat", late["id"])
        assert tx.identities_of("gone") == [] and tx.entitlements_of("gone") == []
    assert applied.status == "processed" and "gone@example.com" not in applied.payload + str(applied.data)
