"""The retry job's window for abandoned deliveries: EVENTS_STALE_AFTER_SECONDS, read once into
the settings and handed to the job by the commands that run it."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from devtools import revenuecat as rc
from gateway.domain.catalog import Catalog
from gateway.ingest import Ingest
from gateway.jobs import retry
from gateway.providers.revenuecat_events import RevenueCatEvents
from tests.fakes.memory_store import MemoryStore
from tests.support.events import record_event

START = datetime(2026, 11, 1, tzinfo=timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def purchase() -> bytes:
    return rc.body(rc.event("INITIAL_PURCHASE", user="user-1", at_ms=int(START.timestamp() * 1000)))


def abandon(store, received_at: datetime) -> None:
    """Recorded, then the process died before applying it."""
    body = purchase()
    with store.transaction() as tx:
        record_event(tx, source="revenuecat", event_id="e-1", event_type="INITIAL_PURCHASE",
                     received_at=received_at, payload=body.decode(), data=json.loads(body)["event"])


def test_an_abandoned_delivery_is_retried_once_older_than_the_window_it_is_given():
    store, clock = MemoryStore(), Clock()
    ingest = Ingest(store, Catalog(products={}), clock)
    providers = {"revenuecat": RevenueCatEvents((rc.AUTH,), Catalog(products={}))}
    abandon(store, clock.now)
    clock.now += timedelta(seconds=29)
    assert retry.retry_due(ingest, providers, stale_after=timedelta(seconds=30)) == {}
    clock.now += timedelta(seconds=2)
    assert retry.retry_due(ingest, providers, stale_after=timedelta(seconds=30)) == {"processed": 1}
    assert store.state.entitlements["user-1"]


def test_the_default_window_is_the_settings_default():
    assert retry.STALE_AFTER == timedelta(seconds=120)


@pytest.mark.parametrize("configured, due", [(None, "nothing due"), ("1", "processed: 1")])
def test_the_setting_reaches_the_retry_command(make_app, configured, due):
    env = {"REVENUECAT_WEBHOOK_AUTH": rc.AUTH}
    if configured:
        env["EVENTS_STALE_AFTER_SECONDS"] = configured
    app = make_app(**env)
    abandon(app.extensions["gateway"].store, datetime.now(timezone.utc) - timedelta(seconds=5))
    result = app.test_cli_runner().invoke(args=["events", "retry"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == due  # 5 s old: stale under a 1 s window, not under 120 s


@pytest.mark.parametrize("configured, applied", [(None, False), ("1", True)])
def test_the_setting_reaches_the_worker(make_app, configured, applied):
    env = {"REVENUECAT_WEBHOOK_AUTH": rc.AUTH, **({"EVENTS_STALE_AFTER_SECONDS": configured} if configured else {})}
    app = make_app(**env)
    abandon(app.extensions["gateway"].store, datetime.now(timezone.utc) - timedelta(seconds=5))
    result = app.test_cli_runner().invoke(args=["events", "work", "--once"])
    assert result.exit_code == 0, result.output
    with app.extensions["gateway"].store.transaction() as tx:
        assert bool(tx.entitlements_of("user-1")) is applied  # 5 s old: stale under 1 s, not under 120 s
