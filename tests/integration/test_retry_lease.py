"""The retry worker's lease, with two workers on one database: an event is leased when
its turn comes, not with a whole claim. A claim of many leased at once ran out while the
first worker was still applying them one by one (each calling a slow store API); a second
worker then applied the rest, the first applied them again from its stale copy, and its
outcome (a timeout: ``failed``) overwrote the second's ``processed``."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from devtools import revenuecat as rc
from gateway.domain.catalog import Catalog
from gateway.ingest import Ingest
from gateway.jobs import retry
from gateway.providers.revenuecat_events import RevenueCatEvents
from gateway.store import tables
from tests.conftest import DATABASE
from tests.support.events import record_event

pytestmark = pytest.mark.skipif(DATABASE != "postgresql", reason="two workers at once: PostgreSQL")

T0 = datetime.now(timezone.utc).replace(microsecond=0)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class StoreApiTimeout(Exception):
    pass


class StoreBehindAnApi:
    """RevenueCat's translation standing in for a provider that calls its store's API:
    ``answers`` says what the API does for each event id (a callable run first)."""

    source, translates_offline = "revenuecat", False

    def __init__(self, answers, calls) -> None:
        self.inner = RevenueCatEvents((rc.AUTH,), Catalog(products={}))
        self.answers, self.calls = answers, calls

    def translate(self, event, lookup):
        self.calls.append(event.event_id)
        self.answers.get(event.event_id, lambda: None)()
        return self.inner.translate(event, lookup)


def deferred(store, event_id: str, user: str) -> None:
    """A delivery deferred 14 times over four days (its store API timed out), due now."""
    body = rc.event("INITIAL_PURCHASE", user, at_ms=int(T0.timestamp() * 1000), transaction=f"t-{user}")
    with store.transaction() as tx:
        event = record_event(tx, source="revenuecat", event_id=event_id, event_type="INITIAL_PURCHASE",
                             received_at=T0 - timedelta(days=4), payload=json.dumps({"event": body}), data=body)
        tx.update_event(event.id, status="deferred", attempts=14, next_attempt_at=T0, last_error="timed out")


def status(store, event_id: str) -> str:
    with store.engine.connect() as connection:
        return connection.execute(sa.select(tables.events.c.status)
                                  .where(tables.events.c.event_id == event_id)).scalar_one()


def test_an_event_claimed_by_a_worker_is_not_applied_again_by_another_once_the_lease_ran_out(make_app):
    app_a, app_b = make_app(), make_app()  # two worker dynos on one database
    clock, calls = Clock(), []
    store_a, store_b = app_a.extensions["gateway"].store, app_b.extensions["gateway"].store
    ingest_a = Ingest(store_a, Catalog(products={}), clock)
    ingest_b = Ingest(store_b, Catalog(products={}), clock)
    for n in range(3):
        deferred(store_a, f"e-{n}", f"user-{n}")
    outcomes_b = {}

    def slow():
        clock.now += timedelta(minutes=6)  # the store API answers slowly: past the 5 min lease

    def b_runs():  # another dyno's turn while A is still applying its claim
        outcomes_b.update(retry.retry_due(ingest_b, {"revenuecat": StoreBehindAnApi({}, calls)}))

    def timed_out():
        raise StoreApiTimeout("store API timed out after 5 s")

    provider_a = StoreBehindAnApi({"e-0": slow, "e-1": b_runs, "e-2": timed_out}, calls)
    outcomes_a = retry.retry_due(ingest_a, {"revenuecat": provider_a})

    with store_a.transaction(readonly=True) as tx:
        granted = bool(tx.entitlements_of("user-2"))
    report = f"A: {dict(outcomes_a)}, B: {outcomes_b}, translations: {calls}, e-2 {status(store_a, 'e-2')}"
    assert sorted(calls) == ["e-0", "e-1", "e-2"], report  # each applied once: by A, or by B if A had not yet
    assert granted and status(store_a, "e-2") == "processed", report


def test_a_worker_whose_lease_ran_out_does_not_mark_the_event_another_applied(make_app):
    app_a, app_b = make_app(), make_app()
    clock, calls, outcomes_b = Clock(), [], {}
    store_a, store_b = app_a.extensions["gateway"].store, app_b.extensions["gateway"].store
    ingest_a = Ingest(store_a, Catalog(products={}), clock)
    ingest_b = Ingest(store_b, Catalog(products={}), clock)
    deferred(store_a, "e-0", "user-0")  # 14 attempts over four days: one more failure gives up

    def slow_then_timed_out():
        clock.now += timedelta(minutes=6)  # past the 5 min lease, B takes the event over ...
        outcomes_b.update(retry.retry_due(ingest_b, {"revenuecat": StoreBehindAnApi({}, calls)}))
        raise StoreApiTimeout("store API timed out")  # ... then A's call fails

    outcomes_a = retry.retry_due(ingest_a, {"revenuecat": StoreBehindAnApi({"e-0": slow_then_timed_out}, calls)})
    report = f"A: {dict(outcomes_a)}, B: {outcomes_b}, e-0 {status(store_a, 'e-0')}"
    assert outcomes_b == {"processed": 1} and outcomes_a == {"taken over": 1}, report
    assert status(store_a, "e-0") == "processed", report  # not failed, with A's timeout
