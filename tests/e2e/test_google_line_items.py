"""A Play subscription with add-ons: one purchase token, several line items, each with its
product and its own ``expiryTime``
(https://developer.android.com/google/play/billing/subscription-with-addons,
https://developers.google.com/android-publisher/api-ref/rest/v3/purchases.subscriptionsv2).
Each item still paid for grants what the catalog maps its product to."""
from __future__ import annotations

import datetime as dt
import json
import time

import pytest

from devtools import google_pubsub as rtdn
from devtools.google_play import rfc3339
from tests.support.google_gateway import API_KEY, GoogleGateway, _play_server, play, push_signer  # noqa: F401

USER = "a11ce000-0000-4000-8000-0000000000ad"
CATALOG = {"entitlements": {"premium": {"google": ["premium_monthly"]}, "storage": {"google": ["storage_addon"]}},
           "default": None}


@pytest.fixture
def google(make_app, push_signer, play, cognito, tmp_path):
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(CATALOG))
    push_signer.available = True
    app = make_app(**push_signer.env(), **play.env(), **cognito.env(), GATEWAY_API_KEYS=API_KEY,
                   CATALOG_PATH=str(catalog))
    return GoogleGateway(app, push_signer, play, cognito)


def with_addon(play, token: str, addon_days: float, renews: bool = True) -> None:
    """The base plan bought with an add-on; Play lists the items in no promised order."""
    purchase = play.subscribe(token, user=USER, acknowledged=True)
    base = purchase["lineItems"][0]
    addon = {**base, "productId": "storage_addon", "offerDetails": {"basePlanId": "storage-monthly"},
             "autoRenewingPlan": {"autoRenewEnabled": renews},
             "expiryTime": rfc3339(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=addon_days))}
    purchase["lineItems"] = [addon, base]


def test_every_line_item_grants_its_products_entitlement(google):
    with_addon(google.play, "tok-addon", addon_days=30)
    assert google.push(rtdn.subscription("tok-addon", 4)).get_json() == {"status": "processed"}
    granted = google.entitlements(USER)["entitlements"]
    assert sorted(granted) == ["premium", "storage"]
    assert granted["premium"]["active"] and granted["storage"]["active"]


def test_an_add_on_past_its_own_expiry_grants_nothing_more(google):
    with_addon(google.play, "tok-lapsed", addon_days=-2, renews=False)  # removed, and lapsed
    assert google.push(rtdn.subscription("tok-lapsed", 17)).get_json() == {"status": "processed"}
    granted = google.entitlements(USER)["entitlements"]
    assert granted["premium"]["active"] is True
    assert "storage" not in granted or granted["storage"]["active"] is False


def test_a_subscription_with_an_add_on_that_ended_reports_both_entitlements_expired(google):
    """Every item ended (the purchase expired, or is on hold): none is live to say what the
    purchase granted, but both entitlements lapsed, they were not taken back. Judged on the
    ending item alone, the other entitlement vanished and the feed said entitlement.revoked."""
    with_addon(google.play, "tok-ended", addon_days=30)
    assert google.push(rtdn.subscription("tok-ended", 4)).get_json() == {"status": "processed"}
    ended = rfc3339(dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1))
    purchase = google.play.purchases["tok-ended"]
    purchase["subscriptionState"] = "SUBSCRIPTION_STATE_EXPIRED"
    for item in purchase["lineItems"]:
        item["expiryTime"], item["autoRenewingPlan"] = ended, {"autoRenewEnabled": False}
    assert google.push(rtdn.subscription("tok-ended", 13)).get_json() == {"status": "processed"}
    granted = google.entitlements(USER)["entitlements"]
    assert sorted(granted) == ["premium", "storage"]
    assert [granted[name]["status"] for name in ("premium", "storage")] == ["expired", "expired"]
    feed = google.client.get("/v1/events", query_string={"after": 0, "limit": 100},
                             headers={"Authorization": f"Bearer {API_KEY}"}).get_json()["events"]
    assert [(e["entitlement"], e["type"]) for e in feed if e["type"] != "entitlement.granted"] == [
        ("premium", "entitlement.expired"), ("storage", "entitlement.expired")]


def test_an_add_on_that_ends_before_its_base_plan_lapses_at_its_own_end_without_a_notification(google):
    """An add-on's line item ends before the base plan's (removed, or bought for a shorter
    period): read after its ``expiryTime`` and before the base plan's, with no notification
    since, its entitlement no longer grants. A snapshot carried one end, the latest item's,
    so the add-on granted until the next read of the purchase."""
    with_addon(google.play, "tok-short", addon_days=2 / 86_400, renews=False)
    assert google.push(rtdn.subscription("tok-short", 4)).get_json() == {"status": "processed"}
    assert google.entitlements(USER)["entitlements"]["storage"]["active"] is True
    addon_end = google.play.purchases["tok-short"]["lineItems"][0]["expiryTime"]
    while rfc3339(dt.datetime.now(dt.timezone.utc)) <= addon_end:
        time.sleep(0.1)
    granted = google.entitlements(USER)["entitlements"]
    assert granted["premium"]["active"] is True
    assert granted["storage"]["active"] is False and granted["storage"]["status"] == "expired"
    assert granted["storage"]["expires_at"][:19] == addon_end[:19]
    history = google.client.get(f"/v1/users/{USER}/history", headers={"Authorization": f"Bearer {API_KEY}"})
    (held,) = history.get_json()["subscriptions"]
    assert held["explanation"].startswith("grants storage (lapsed at ") and "premium until" in held["explanation"]


def test_an_add_on_read_after_its_end_is_reported_expired_not_revoked(google):
    """The next read of the purchase after an add-on's end (here: Play's notification that
    the items changed) says the add-on's entitlement expired. Judged on the items still
    live, it vanished, and the feed said entitlement.revoked, as for a refund."""
    with_addon(google.play, "tok-lapsing", addon_days=10)
    assert google.push(rtdn.subscription("tok-lapsing", 4)).get_json() == {"status": "processed"}
    addon = google.play.purchases["tok-lapsing"]["lineItems"][0]
    addon["expiryTime"] = rfc3339(dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1))
    addon["autoRenewingPlan"] = {"autoRenewEnabled": False}
    assert google.push(rtdn.subscription("tok-lapsing", 17)).get_json() == {"status": "processed"}
    granted = google.entitlements(USER)["entitlements"]
    assert granted["premium"]["active"] is True and granted["storage"]["status"] == "expired"
    feed = google.client.get("/v1/events", query_string={"after": 0, "limit": 100},
                             headers={"Authorization": f"Bearer {API_KEY}"}).get_json()["events"]
    assert [(e["entitlement"], e["type"]) for e in feed if e["type"] != "entitlement.granted"] == [
        ("storage", "entitlement.expired")]
