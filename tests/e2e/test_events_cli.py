"""The event log from the command line: list, show, retry and replay."""
from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import API_KEY
from tests.support import revenuecat as rc


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
