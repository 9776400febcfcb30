"""Checkout refuses to sell what the user already has, from any store, as the App Store and
Google Play refuse a second purchase of an owned subscription: a second Stripe subscription
would bill the user twice for the same entitlements. A deleted account buys nothing."""
from __future__ import annotations

import json
import time

import pytest

from devtools import revenuecat as rc
from devtools import stripe_objects as so
from devtools.stripe_signing import new_secret, signed
from tests.e2e.conftest import API_KEY
from tests.support.stripe_gateway import fake, stripe_server  # noqa: F401 (fixtures)

USER = "5d1e8c2a-3b4f-4a6e-9d7c-8b2a1f0e3c4d"
SECRET = new_secret()
DAY = 86400
#: premium alone, or premium and family together in one price.
CATALOG = {"entitlements": {"premium": {"stripe": ["price_monthly", "price_bundle"]},
                            "family": {"stripe": ["price_bundle"]}},
           "default": None}


@pytest.fixture
def client(make_app, fake, cognito, tmp_path):
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(CATALOG))
    return make_app(**cognito.env(), STRIPE_API_KEY=fake.api_key, STRIPE_API_BASE=fake.url,
                    STRIPE_WEBHOOK_SECRETS=SECRET, REVENUECAT_WEBHOOK_AUTH=rc.AUTH,
                    GATEWAY_API_KEYS=API_KEY, CATALOG_PATH=str(catalog)).test_client()


def checkout(client, cognito, price_id: str = "price_monthly"):
    return client.post("/v1/checkout/sessions", headers=cognito.header(USER),
                       json={"price_id": price_id, "success_url": "https://app.example.com/welcome",
                             "cancel_url": "https://app.example.com/pricing"})


def stripe_subscription(client, status: str = "active", end: int | None = None, event: str = "customer.subscription.created"):
    start = int(time.time()) - 40 * DAY
    body = so.subscription("basil", sub_id="sub_owned", customer="cus_owned", status=status, start=start,
                           end=end or int(time.time()) + 20 * DAY, cognito_sub=USER)
    payload, headers = signed(so.event(event, body), SECRET)
    assert client.post("/webhooks/stripe", data=payload, headers=headers).status_code == 200


def revenuecat(client, kind: str, **fields):
    response = client.post("/webhooks/revenuecat", data=rc.body(rc.event(kind, USER, **fields)),
                           headers={"Authorization": rc.AUTH, "Content-Type": "application/json"})
    assert response.status_code == 200, response.get_json()


def test_a_user_subscribed_on_the_web_is_refused_a_second_subscription(client, cognito, fake):
    stripe_subscription(client)
    response = checkout(client, cognito)
    assert response.status_code == 409, response.get_json()
    answer = response.get_json()
    assert answer["error"] == "already_entitled"
    assert "premium" in answer["message"] and "stripe" in answer["message"]
    assert fake.sessions() == []  # nothing was opened at Stripe


def test_a_user_subscribed_in_the_app_is_refused_a_web_subscription_for_the_same(client, cognito, fake):
    revenuecat(client, "INITIAL_PURCHASE")
    response = checkout(client, cognito)
    assert (response.status_code, response.get_json()["error"]) == (409, "already_entitled")
    assert "revenuecat" in response.get_json()["message"]
    assert fake.sessions() == []


def test_a_price_granting_more_than_the_user_has_is_sold(client, cognito, fake):
    stripe_subscription(client)
    response = checkout(client, cognito, "price_bundle")  # premium, held, and family, not
    assert response.status_code == 200, response.get_json()
    assert len(fake.sessions()) == 1


@pytest.mark.parametrize("lapse", ["ended", "refunded"])
def test_a_user_whose_subscription_lapsed_can_subscribe_again(client, cognito, fake, lapse):
    if lapse == "ended":
        stripe_subscription(client, end=int(time.time()) - DAY)  # its period is over
    else:
        revenuecat(client, "INITIAL_PURCHASE")
        revenuecat(client, "CANCELLATION", cancel_reason="CUSTOMER_SUPPORT")  # a refund
    response = checkout(client, cognito)
    assert response.status_code == 200, response.get_json()
    assert len(fake.sessions()) == 1


def test_a_user_in_a_billing_grace_period_still_holds_it_and_is_refused(client, cognito, fake):
    stripe_subscription(client, status="past_due", event="customer.subscription.updated")
    response = checkout(client, cognito)
    assert (response.status_code, response.get_json()["error"]) == (409, "already_entitled")
    # ...and is sent where the payment can be fixed: the portal still answers.
    portal = client.post("/v1/billing-portal/sessions", json={"return_url": "https://app.example.com/account"},
                         headers=cognito.header(USER))
    assert portal.status_code == 200, portal.get_json()


def test_a_deleted_account_gets_no_checkout_nor_portal_and_stripe_is_not_asked(client, cognito, fake):
    deleted = client.delete("/v1/me", headers=cognito.header(USER))
    assert deleted.status_code == 200, deleted.get_json()
    asked = len(fake.requests)
    response = checkout(client, cognito)  # the user's token is still valid for up to an hour
    assert (response.status_code, response.get_json()["error"]) == (403, "account_deleted")
    portal = client.post("/v1/billing-portal/sessions", json={"return_url": "https://app.example.com/account"},
                         headers=cognito.header(USER))
    assert (portal.status_code, portal.get_json()["error"]) == (403, "account_deleted")
    assert fake.customers == [] and fake.sessions() == [] and len(fake.requests) == asked
