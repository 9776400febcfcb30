"""GET /v1/users/<sub>/history: entitlements, the subscriptions behind them and the
deliveries that produced them, for a user with subscriptions from three sources."""
from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta

import pytest

from devtools import revenuecat as rc
from devtools import stripe_objects as so
from devtools.apple_pki import mint_chain
from devtools.apple_store import AppStore, now
from devtools.stripe_signing import new_secret, signed
from tests.e2e.conftest import API_KEY

USER = str(uuid.uuid4())
STRIPE_SECRET = new_secret()
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def chain():
    return mint_chain()


@pytest.fixture
def apple(chain):
    return AppStore(chain)


@pytest.fixture
def client(make_app, apple, chain, tmp_path):
    app = make_app(GATEWAY_API_KEYS=API_KEY, REVENUECAT_WEBHOOK_AUTH=rc.AUTH,
                   STRIPE_WEBHOOK_SECRETS=STRIPE_SECRET, **apple.env(chain.write_root(tmp_path)))
    return app.test_client()


def deliver_three_sources(client, apple) -> None:
    at_ms = int(time.time() * 1000)
    r = client.post("/webhooks/revenuecat", data=rc.body(rc.event("INITIAL_PURCHASE", USER, at_ms=at_ms - 5000)),
                    headers={"Authorization": rc.AUTH})
    assert r.get_json() == {"status": "processed"}
    r = client.post("/webhooks/revenuecat", data=rc.body(rc.event("EXPIRATION", USER, at_ms=at_ms)),
                    headers={"Authorization": rc.AUTH})
    assert r.get_json() == {"status": "processed"}
    sub = so.subscription("basil", sub_id="sub_hist1", customer="cus_hist1", cognito_sub=USER)
    body, headers = signed(so.event("customer.subscription.created", sub), STRIPE_SECRET)
    assert client.post("/webhooks/stripe", data=body, headers=headers).get_json() == {"status": "processed"}
    transaction = apple.transaction("7000", token=USER, expires=now() + timedelta(days=30))
    note = apple.notification("SUBSCRIBED", "INITIAL_BUY", transaction=transaction, renewal=apple.renewal("7000"))
    r = client.post("/webhooks/apple", data=apple.body(note), content_type="application/json")
    assert r.get_json() == {"status": "processed"}


def history(client, user=USER, **query):
    response = client.get(f"/v1/users/{user}/history", headers=AUTH, query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_history_needs_an_api_key(client):
    assert client.get(f"/v1/users/{USER}/history").status_code == 401
    response = client.get(f"/v1/users/{USER}/history", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_api_key"


def test_history_of_a_user_with_three_sources(client, apple):
    deliver_three_sources(client, apple)
    answer = history(client)
    entitlements = client.get(f"/v1/users/{USER}/entitlements", headers=AUTH).get_json()
    assert {k: answer[k] for k in ("user_id", "is_premium", "entitlements")} == entitlements
    assert answer["is_premium"] is True
    by_source = {s["source"]: s for s in answer["subscriptions"]}
    assert set(by_source) == {"apple", "revenuecat", "stripe"}
    assert set(by_source["stripe"]) == {
        "source", "key", "status", "raw_status", "product_id", "expires_at", "will_renew", "as_of",
        "environment", "owner_as_of", "entitlements", "chosen_for", "explanation", "evidence"}
    assert by_source["revenuecat"]["status"] == "expired"
    assert by_source["revenuecat"]["explanation"].startswith("grants nothing")
    assert by_source["stripe"]["key"] == "sub_hist1" and by_source["stripe"]["raw_status"] == "active"
    chosen = [s["source"] for s in answer["subscriptions"] if "premium" in s["chosen_for"]]
    assert chosen == [entitlements["entitlements"]["premium"]["source"]]
    deliveries = answer["deliveries"]
    assert [d["id"] for d in deliveries] == sorted((d["id"] for d in deliveries), reverse=True)
    assert [d["type"] for d in deliveries] == [
        "SUBSCRIBED:INITIAL_BUY", "customer.subscription.created", "EXPIRATION", "INITIAL_PURCHASE"]
    assert set(deliveries[0]) == {"id", "source", "event_id", "type", "status", "received_at", "attempts",
                                  "last_error", "processed_at", "subscriptions"}
    assert all(d["status"] == "processed" and d["attempts"] == 1 for d in deliveries)
    assert len(by_source["revenuecat"]["evidence"]) == 2 and answer["next_before"] is None


def test_history_pages_through_deliveries(client, apple):
    deliver_three_sources(client, apple)
    first = history(client, limit=3)
    assert len(first["deliveries"]) == 3 and first["next_before"] == first["deliveries"][-1]["id"]
    rest = history(client, limit=3, before=first["next_before"])
    assert [d["type"] for d in rest["deliveries"]] == ["INITIAL_PURCHASE"] and rest["next_before"] is None
    bad = client.get(f"/v1/users/{USER}/history", headers=AUTH, query_string={"limit": "0"})
    assert bad.status_code == 400 and bad.get_json()["error"] == "bad_query"


def test_history_of_an_unknown_user_is_empty(client):
    assert history(client, "nobody") == {"user_id": "nobody", "is_premium": False, "entitlements": {},
                                         "subscriptions": [], "deliveries": [], "next_before": None}


def test_a_transfer_is_evidence_for_the_subscriptions_it_moved(client):
    client.post("/webhooks/revenuecat", data=rc.body(rc.event("INITIAL_PURCHASE", "from-user")),
                headers={"Authorization": rc.AUTH})
    moved = rc.transfer(["from-user"], [USER], at_ms=int(time.time() * 1000) + 1000)
    client.post("/webhooks/revenuecat", data=rc.body(moved), headers={"Authorization": rc.AUTH})
    answer = history(client)
    assert answer["is_premium"] is True
    assert [d["type"] for d in answer["deliveries"]] == ["TRANSFER", "INITIAL_PURCHASE"]
    assert json.dumps(answer["deliveries"][0]["subscriptions"]) == json.dumps(
        [{"source": "revenuecat", "key": "1000001"}])


def test_the_in_memory_store_keeps_the_same_evidence():
    from gateway import create_app
    from gateway.config import from_env
    from tests.fakes.memory_store import MemoryStore

    app = create_app(from_env({"GATEWAY_API_KEYS": API_KEY, "REVENUECAT_WEBHOOK_AUTH": rc.AUTH}), store=MemoryStore())
    client = app.test_client()
    for kind in ("INITIAL_PURCHASE", "TEST", "RENEWAL"):
        client.post("/webhooks/revenuecat", data=rc.body(rc.event(kind, USER)), headers={"Authorization": rc.AUTH})
    first = history(client, limit=1)
    assert [d["type"] for d in first["deliveries"]] == ["RENEWAL"] and first["next_before"] == 3
    rest = history(client, before=3)
    assert [d["type"] for d in rest["deliveries"]] == ["INITIAL_PURCHASE"]  # TEST touched nothing
    assert rest["subscriptions"][0]["evidence"] == [1] and rest["is_premium"] is True


@pytest.mark.parametrize("status, expires_in_days, names, expected", [
    ("active", 3, ("premium",), "grants premium until "),
    ("grace_period", None, ("premium",), "grants premium with no end (status grace_period)"),
    ("active", -1, ("premium",), "grants nothing: active but lapsed at "),
    ("revoked", 3, ("premium",), "grants nothing: status revoked, store status 'RAW'"),
    ("active", 3, (), "grants nothing: product 'prod' maps to no entitlement in the catalog"),
])
def test_the_verdict_says_why_a_subscription_counts_or_not(status, expires_in_days, names, expected):
    from gateway.domain.model import Snapshot, Status, Subscription
    from gateway.explain import verdict

    at = now()
    expires = at + timedelta(days=expires_in_days) if expires_in_days is not None else None
    snapshot = Snapshot("stripe", "sub_1", at - timedelta(days=5), Status(status), product_id="prod",
                        expires_at=expires, raw_status="RAW")
    assert verdict(Subscription(snapshot, owner="u"), names, at).startswith(expected)


@pytest.mark.parametrize("query", ["limit=%C2%B2", "before=%C2%B2", "before=99999999999999999999999"])
def test_paging_arguments_that_are_not_plain_row_numbers_are_400(make_app, query):
    client = make_app(GATEWAY_API_KEYS=API_KEY).test_client()
    answer = client.get(f"/v1/users/u1/history?{query}", headers={"Authorization": f"Bearer {API_KEY}"})
    assert (answer.status_code, answer.get_json()["error"]) == (400, "bad_query")
