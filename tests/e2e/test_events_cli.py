"""The event log from the command line: list, show, retry and replay."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from devtools import revenuecat as rc
from gateway.jobs import retry
from tests.e2e.conftest import API_KEY


@pytest.fixture
def app(make_app):
    return make_app(REVENUECAT_WEBHOOK_AUTH=rc.AUTH, GATEWAY_API_KEYS=API_KEY)


def send(app, evt):
    response = app.test_client().post("/webhooks/revenuecat", data=rc.body(evt), headers={"Authorization": rc.AUTH})
    return response.get_json()["status"]


def run(app, *args):
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 0, result.output
    return result.output


def premium(app, user="user-1"):
    response = app.test_client().get(f"/v1/users/{user}/entitlements", headers={"Authorization": f"Bearer {API_KEY}"})
    return response.get_json()["is_premium"]


def test_list_and_show_the_stored_deliveries(app):
    send(app, rc.event("INITIAL_PURCHASE"))
    send(app, rc.event("TEST"))
    listed = run(app, "events", "list").splitlines()
    assert len(listed) == 2 and "TEST" in listed[0] and "ignored" in listed[0] and "processed" in listed[1]
    assert run(app, "events", "list", "--status", "ignored").count("\n") == 1
    shown = json.loads(run(app, "events", "show", listed[1].split()[0]))
    assert shown["status"] == "processed" and shown["data"]["type"] == "INITIAL_PURCHASE"


def test_a_delivery_that_failed_to_apply_is_deferred_and_replayed(app, refuse_writes):
    refuse_writes.on("subscriptions")
    assert send(app, rc.event("INITIAL_PURCHASE")) == "deferred"
    refuse_writes.off()
    listed = run(app, "events", "list", "--status", "deferred")
    assert "database or disk is full" in listed or "could not extend file" in listed
    assert premium(app) is False
    assert run(app, "events", "retry").strip() == "nothing due"  # backing off
    assert run(app, "events", "replay", listed.split()[0]).strip() == "processed: 1"
    assert premium(app) is True


def test_replay_of_applied_deliveries_changes_nothing(app):
    send(app, rc.event("INITIAL_PURCHASE", at_ms=1_900_000_000_000))
    send(app, rc.event("CANCELLATION", cancel_reason="CUSTOMER_SUPPORT", at_ms=1_900_000_100_000))
    before = app.test_client().get("/v1/users/user-1/entitlements", headers={"Authorization": f"Bearer {API_KEY}"}).get_json()
    assert run(app, "events", "replay", "--since", "2000-01-01T00:00:00Z").strip() == "processed: 2"
    after = app.test_client().get("/v1/users/user-1/entitlements", headers={"Authorization": f"Bearer {API_KEY}"}).get_json()
    assert after == before and after["entitlements"]["premium"]["status"] == "revoked"


def test_replay_names_what_it_cannot_find(app):
    result = app.test_cli_runner().invoke(args=["events", "replay", "999"])
    assert result.exit_code != 0 and "no event 999" in result.output
    result = app.test_cli_runner().invoke(args=["events", "replay"])
    assert result.exit_code != 0 and "--failed" in result.output


def test_since_with_a_utc_offset_means_that_instant(app):
    send(app, rc.event("INITIAL_PURCHASE"))
    with app.extensions["gateway"].store.transaction() as tx:
        received = tx.search_events(limit=1)[0].received_at
    india = timezone(timedelta(hours=5, minutes=30))
    before = (received - timedelta(minutes=1)).astimezone(india).isoformat()
    after = (received + timedelta(minutes=1)).astimezone(india).isoformat()
    assert "INITIAL_PURCHASE" in run(app, "events", "list", "--since", before)
    assert "INITIAL_PURCHASE" not in run(app, "events", "list", "--since", after)


def test_an_event_named_and_matched_by_since_is_replayed_once(app):
    send(app, rc.event("INITIAL_PURCHASE"))
    output = run(app, "events", "replay", "1", "--since", "2000-01-01T00:00:00Z")
    assert output.strip() == "processed: 1"


def test_the_worker_waits_out_a_database_that_refuses_writes_then_goes_on(app, refuse_writes):
    refuse_writes.on("subscriptions")
    assert send(app, rc.event("INITIAL_PURCHASE")) == "deferred"
    refuse_writes.off()
    with app.extensions["gateway"].store.engine.begin() as connection:  # its backoff has passed
        connection.execute(sa.text("UPDATE events SET next_attempt_at = :past"),
                           {"past": datetime.now(timezone.utc) - timedelta(minutes=1)})
    services = app.extensions["gateway"]
    refuse_writes.on("events")  # the worker cannot even claim: before, it exited
    retry.work(services.ingest, services.providers, idle_seconds=0, once=True)
    refuse_writes.off()
    retry.work(services.ingest, services.providers, idle_seconds=0, once=True)
    assert premium(app) is True
