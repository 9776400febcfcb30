"""The ingest use case against the in-memory store: record, dedupe, apply, defer, retry."""
from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone

import pytest

from devtools import revenuecat as rc
from gateway.domain.catalog import Catalog
from gateway.errors import Malformed, StoreApiError, Unavailable
from gateway.ingest import Ingest
from gateway.jobs.retry import retry_due
from gateway.providers.revenuecat_events import RevenueCatEvents
from tests.fakes.memory_store import MemoryStore
from tests.support.events import record_event

HEADERS = {"Authorization": rc.AUTH}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


class Flaky(RevenueCatEvents):
    """RevenueCat, with a store API behind it that fails the first ``failures`` times."""

    def __init__(self, failures: int, error: Exception | None = None, offline: bool = False) -> None:
        super().__init__((rc.AUTH,), Catalog(products={}))
        self.failures, self.error = failures, error or StoreApiError("store API timed out")
        self.translates_offline = offline

    def verify(self, body, headers):
        # Leave translating to translate(), where the failures are.
        return dataclasses.replace(super().verify(body, headers), translation=None)

    def translate(self, event, lookup):
        if self.failures:
            self.failures -= 1
            raise self.error
        return super().translate(event, lookup)


@pytest.fixture
def world():
    store, clock = MemoryStore(), Clock()
    return store, clock, Ingest(store, Catalog(products={}), clock, max_attempts=3)


def purchase(user="user-1"):
    return rc.body(rc.event("INITIAL_PURCHASE", user=user, at_ms=int(datetime(2026, 11, 1, tzinfo=timezone.utc).timestamp() * 1000)))


def events(store):
    return list(store.state.events.values())


def test_processed_delivery_is_recorded_and_applied(world):
    store, clock, ingest = world
    assert ingest.receive(Flaky(0), purchase(), HEADERS) == "processed"
    (event,) = events(store)
    assert (event.status, event.attempts, event.processed_at) == ("processed", 1, clock.now)
    assert [g.name for g in store.state.entitlements["user-1"]] == ["premium"]


def test_redelivery_is_a_duplicate_and_changes_nothing(world):
    store, _, ingest = world
    body = purchase()
    ingest.receive(Flaky(0), body, HEADERS)
    before = store.state
    assert ingest.receive(Flaky(0), body, HEADERS) == "duplicate"
    assert store.state == before


def test_a_store_that_cannot_record_answers_unavailable_and_keeps_nothing(world):
    store, _, ingest = world
    store.refuse_writes = True
    with pytest.raises(Unavailable):
        ingest.receive(Flaky(0), purchase(), HEADERS)
    store.refuse_writes = False
    assert events(store) == []


def test_failure_after_recording_defers_and_the_retry_applies_it(world):
    store, clock, ingest = world
    provider = Flaky(1)
    assert ingest.receive(provider, purchase(), HEADERS) == "deferred"
    (event,) = events(store)
    assert (event.status, event.attempts) == ("deferred", 1)
    assert "store API timed out" in event.last_error and event.next_attempt_at > clock.now
    assert "user-1" not in store.state.entitlements

    assert retry_due(ingest, {"revenuecat": provider}) == {}  # not due yet
    clock.now += timedelta(hours=7)
    assert retry_due(ingest, {"revenuecat": provider}) == {"processed": 1}
    (event,) = events(store)
    assert (event.status, event.attempts) == ("processed", 2)
    assert store.state.entitlements["user-1"]


def test_an_event_failing_every_attempt_ends_failed_with_its_error(world):
    store, clock, ingest = world
    provider = Flaky(10)
    ingest.receive(provider, purchase(), HEADERS)
    for _ in range(3):
        clock.now += timedelta(days=2)
        retry_due(ingest, {"revenuecat": provider})
    (event,) = events(store)
    assert (event.status, event.attempts) == ("failed", 3)
    assert "timed out" in event.last_error


def test_an_event_is_not_given_up_on_before_three_days_however_many_attempts(world):
    store, clock, ingest = world
    provider = Flaky(100)
    ingest.receive(provider, purchase(), HEADERS)
    for _ in range(10):  # a store API outage: attempts pile up (each due within the 6 h cap)
        clock.now += timedelta(hours=7)
        retry_due(ingest, {"revenuecat": provider})
    (event,) = events(store)
    assert (event.status, event.attempts) == ("deferred", 11)
    clock.now += timedelta(days=2)
    retry_due(ingest, {"revenuecat": provider})
    assert events(store)[0].status == "failed"


def test_an_event_that_cannot_apply_is_failed_not_retried(world):
    store, _, ingest = world
    with pytest.raises(Malformed):
        ingest.receive(Flaky(1, Malformed("no such product")), purchase(), HEADERS)
    (event,) = events(store)
    assert event.status == "failed" and "no such product" in event.last_error


def test_a_delivery_abandoned_mid_request_is_picked_up_once_stale(world):
    store, clock, ingest = world
    with store.transaction() as tx:  # recorded, then the process died before applying
        record_event(tx, source="revenuecat", event_id="e-1", event_type="INITIAL_PURCHASE",
                     received_at=clock.now, payload=purchase().decode(),
                     data=json.loads(purchase())["event"])
    assert retry_due(ingest, {"revenuecat": Flaky(0)}) == {}
    clock.now += timedelta(minutes=3)
    assert retry_due(ingest, {"revenuecat": Flaky(0)}) == {"processed": 1}
    assert store.state.entitlements["user-1"]


def test_a_claimed_event_is_not_handed_to_a_second_worker(world):
    store, clock, ingest = world
    ingest.receive(Flaky(1), purchase(), HEADERS)
    clock.now += timedelta(hours=7)
    with store.transaction() as tx:
        first = tx.claim_due_events(now=clock.now, stale_before=clock.now, lease_until=clock.now + timedelta(minutes=5), limit=10)
        second = tx.claim_due_events(now=clock.now, stale_before=clock.now, lease_until=clock.now + timedelta(minutes=5), limit=10)
    assert len(first) == 1 and second == []


def test_offline_source_is_recorded_and_applied_in_one_go(world):
    store, _, ingest = world
    assert ingest.receive(Flaky(0, offline=True), purchase(), HEADERS) == "processed"
    (event,) = events(store)
    assert (event.status, event.attempts) == ("processed", 1)


def test_offline_source_whose_apply_fails_is_still_recorded_and_deferred(world):
    store, _, ingest = world
    # The first failure rolls the one-transaction path back; the second defers the recorded event.
    assert ingest.receive(Flaky(2, RuntimeError("bug"), offline=True), purchase(), HEADERS) == "deferred"
    (event,) = events(store)
    assert (event.status, event.attempts) == ("deferred", 1) and "bug" in event.last_error
    assert "user-1" not in store.state.entitlements

