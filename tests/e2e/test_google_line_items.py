"""A Play subscription with add-ons: one purchase token, several line items, each with its
product and its own ``expiryTime``
(https://developer.android.com/google/play/billing/subscription-with-addons,
https://developers.google.com/android-publisher/api-ref/rest/v3/purchases.subscriptionsv2).
Each item still paid for grants what the catalog maps its product to."""
from __future__ import annotations

import datetime as dt
import json

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
