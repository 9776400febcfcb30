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
import sqlalchemy as sa

from devtools import google_pubsub as rtdn
from devtools.google_play import rfc3339
from gateway.store import tables
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


def with_addon(play, token: str, addon_days: float, renews: bool = True, base_renews: bool = True) -> None:
    """The base plan bought with an add-on; Play lists the items in no promised order."""
    purchase = play.subscribe(token, user=USER, acknowledged=True, auto_renew=base_renews)
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


def shown(google) -> dict:
    granted = google.entitlements(USER)["entitlements"]
    return {name: (view["product_id"], view["will_renew"], view["expires_at"][:19]) for name, view in granted.items()}


def item_end(google, token: str, product: str) -> str:
    (item,) = [i for i in google.play.purchases[token]["lineItems"] if i["productId"] == product]
    return item["expiryTime"][:19]


def test_an_add_on_cancelled_on_a_renewing_base_plan_shows_its_own_product_and_end_without_renewal(google):
    """The user keeps the base plan and cancels the add-on: Play turns off the add-on's line
    item's ``autoRenewEnabled``, and the purchase renews. The add-on's entitlement showed the
    purchase's renewal (``will_renew: true``, "renews on" in the app) and the base plan's
    product."""
    with_addon(google.play, "tok-cancel-addon", addon_days=20)
    assert google.push(rtdn.subscription("tok-cancel-addon", 4)).get_json() == {"status": "processed"}
    google.play.purchases["tok-cancel-addon"]["lineItems"][0]["autoRenewingPlan"] = {"autoRenewEnabled": False}
    assert google.push(rtdn.subscription("tok-cancel-addon", 17)).get_json() == {"status": "processed"}
    assert shown(google) == {
        "premium": ("premium_monthly", True, item_end(google, "tok-cancel-addon", "premium_monthly")),
        "storage": ("storage_addon", False, item_end(google, "tok-cancel-addon", "storage_addon"))}
    feed = google.client.get("/v1/events", query_string={"after": 0, "limit": 100},
                             headers={"Authorization": f"Bearer {API_KEY}"}).get_json()["events"]
    changes = [(e["entitlement"], e["type"], e["before"]["will_renew"], e["after"]["will_renew"])
               for e in feed if e["type"] != "entitlement.granted"]
    assert changes == [("storage", "entitlement.changed", True, False)]


def test_a_base_plan_and_its_add_on_both_renewing_each_show_their_own_product(google):
    with_addon(google.play, "tok-both", addon_days=30)  # the add-on ends last, by a hair
    assert google.push(rtdn.subscription("tok-both", 4)).get_json() == {"status": "processed"}
    assert shown(google) == {"premium": ("premium_monthly", True, item_end(google, "tok-both", "premium_monthly")),
                             "storage": ("storage_addon", True, item_end(google, "tok-both", "storage_addon"))}


def test_a_base_plan_cancelled_with_its_add_on_renewing_says_only_the_add_on_renews(google):
    """Each line item's own ``autoRenewEnabled``, whichever of them is off; the purchase stays
    active while an item renews."""
    with_addon(google.play, "tok-cancel-base", addon_days=20, renews=True, base_renews=False)
    assert google.push(rtdn.subscription("tok-cancel-base", 4)).get_json() == {"status": "processed"}
    assert shown(google) == {
        "premium": ("premium_monthly", False, item_end(google, "tok-cancel-base", "premium_monthly")),
        "storage": ("storage_addon", True, item_end(google, "tok-cancel-base", "storage_addon"))}


def test_a_purchase_written_by_the_release_before_add_on_terms_is_not_judged_by_terms_older_than_it(google):
    """A rolling upgrade: the previous release, which knew no ``entitlement_terms``, goes on
    writing subscriptions beside this one, and writes every column it knows. Here it saw
    the user take the lapsed add-on again: it wrote the purchase's newer snapshot and granted
    storage to the purchase's end, and left the add-on's own terms as this release had set
    them, ended yesterday. The user's next purchase re-derived every entitlement of the
    user from the stored rows, judged the newer snapshot by the older one's terms and took
    the paid add-on away."""
    with_addon(google.play, "tok-upgrade", addon_days=-1, renews=False)
    assert google.push(rtdn.subscription("tok-upgrade", 4)).get_json() == {"status": "processed"}
    assert google.entitlements(USER)["entitlements"]["storage"]["active"] is False
    subscriptions, entitlements = tables.subscriptions, tables.entitlements
    with google.services.store.engine.begin() as connection:
        (as_of, base_end), = connection.execute(sa.select(subscriptions.c.as_of, subscriptions.c.expires_at))
        # What the previous release's upsert and re-derivation wrote: no entitlement_terms.
        connection.execute(subscriptions.update().values(as_of=as_of + dt.timedelta(seconds=1)))
        connection.execute(entitlements.update().where(entitlements.c.name == "storage")
                           .values(status="active", expires_at=base_end, will_renew=True))
    google.play.subscribe("tok-second", user=USER, acknowledged=True)
    assert google.push(rtdn.subscription("tok-second", 4)).get_json() == {"status": "processed"}
    storage = google.entitlements(USER)["entitlements"]["storage"]
    assert storage["active"] is True
    assert storage["expires_at"][:19] == item_end(google, "tok-upgrade", "premium_monthly")
