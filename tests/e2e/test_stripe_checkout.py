"""Checkout and Customer Portal sessions through the WSGI app, against the local Stripe fake."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import stripe

from cognito_triggers.stripe_customers import StripeCustomers
from devtools import stripe_objects as so
from devtools.stripe_signing import new_secret, signed
from gateway.providers.stripe_api import StripeApiError, StripeHttpApi
from tests.e2e.conftest import API_KEY
from tests.fakes.stripe_api import StripeError
from tests.support.stripe_gateway import fake, stripe_catalog, stripe_server  # noqa: F401 (fixtures)

USER = "0c5b2d6e-7f1a-4e8b-9c3d-2a1b0f9e8d7c"
SECRET = new_secret()
BODY = {"price_id": "price_monthly", "success_url": "https://app.example.com/welcome",
        "cancel_url": "http://localhost:3000/pricing"}


@pytest.fixture
def env(fake, cognito, stripe_catalog):
    return {**cognito.env(), "STRIPE_API_KEY": fake.api_key, "STRIPE_API_BASE": fake.url,
            "STRIPE_WEBHOOK_SECRETS": SECRET, "GATEWAY_API_KEYS": API_KEY, "CATALOG_PATH": stripe_catalog}


@pytest.fixture
def client(make_app, env):
    return make_app(**env).test_client()


def checkout(client, cognito, body=None, user=USER):
    return client.post("/v1/checkout/sessions", json=BODY if body is None else body, headers=cognito.header(user))


def portal(client, cognito, user=USER):
    return client.post("/v1/billing-portal/sessions", json={"return_url": "https://app.example.com/account"},
                       headers=cognito.header(user, use="access"))


def test_checkout_makes_a_subscription_session_for_the_users_new_customer(client, cognito, fake):
    response = checkout(client, cognito)
    assert response.status_code == 200, response.get_json()
    (session,) = fake.sessions()
    assert response.get_json() == {"id": session["id"], "url": session["url"]}
    (customer,) = fake.customers
    assert customer["metadata"]["cognito_sub"] == USER
    params = session["params"]
    assert (params["mode"], params["customer"], params["client_reference_id"]) == ("subscription", customer["id"], USER)
    assert params["subscription_data"]["metadata"]["cognito_sub"] == USER
    assert params["line_items"] == [{"price": "price_monthly", "quantity": "1"}]
    assert (params["success_url"], params["cancel_url"]) == (BODY["success_url"], BODY["cancel_url"])


def test_a_second_checkout_reuses_the_customer(client, cognito, fake):
    assert [checkout(client, cognito).status_code for _ in range(2)] == [200, 200]
    assert len(fake.customers) == 1 and len({s["customer"] for s in fake.sessions()}) == 1


def test_checkout_links_the_customer_so_webhooks_find_the_owner(client, cognito, fake, api):
    checkout(client, cognito)
    (customer,) = fake.customers
    unnamed = so.subscription("basil", sub_id="sub_checkout", customer=customer["id"])  # no metadata
    body, headers = signed(so.event("customer.subscription.created", unnamed), SECRET)
    assert client.post("/webhooks/stripe", data=body, headers=headers).get_json() == {"status": "processed"}
    assert api(client, USER)["entitlements"]["premium"]["active"] is True
    assert not fake.requests_to(f"/v1/customers/{customer['id']}")  # the link answered, not Stripe


@pytest.mark.parametrize("body, problem", [
    ({**BODY, "price_id": "price_not_in_catalog"}, "unknown_price"),
    ({**BODY, "success_url": "ftp://app.example.com/welcome"}, "invalid_body"),
    ({**BODY, "cancel_url": "not a url"}, "invalid_body"),
    ({"price_id": "price_monthly"}, "invalid_body"),
    ([], "invalid_body"),
])
def test_bad_checkout_bodies_are_400_with_a_clear_error(client, cognito, fake, body, problem):
    response = checkout(client, cognito, body)
    assert (response.status_code, response.get_json()["error"]) == (400, problem)
    assert response.get_json()["message"] and not fake.sessions()


def test_a_body_that_is_not_json_is_400(client, cognito):
    response = client.post("/v1/checkout/sessions", data="price_id=x", headers=cognito.header(USER))
    assert (response.status_code, response.get_json()["error"]) == (400, "invalid_body")


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-token"}])
def test_checkout_and_portal_need_a_cognito_token(client, fake, headers):
    for path in ("/v1/checkout/sessions", "/v1/billing-portal/sessions"):
        assert client.post(path, json=BODY, headers=headers).status_code == 401
    assert not fake.requests


def test_the_portal_answers_a_url_for_the_users_customer(client, cognito, fake):
    checkout(client, cognito)
    response = portal(client, cognito)
    assert response.status_code == 200 and set(response.get_json()) == {"url"}
    (session,) = fake.sessions("billing_portal.session")
    assert response.get_json()["url"] == session["url"] and session["customer"] == fake.customers[0]["id"]


def test_a_user_without_a_customer_gets_one_from_the_portal(client, cognito, fake):
    assert portal(client, cognito, user="user-new").status_code == 200
    assert [c["metadata"]["cognito_sub"] for c in fake.customers] == ["user-new"]


def test_stripe_down_is_503_with_a_clear_error(client, cognito, fake):
    fake.fail_with(500)
    for response in (checkout(client, cognito), portal(client, cognito)):
        assert (response.status_code, response.get_json()["error"]) == (503, "stripe_unavailable")
        assert "Stripe" in response.get_json()["message"]


def trigger_creating(fake, pool):
    """The post confirmation trigger creating the user's customer, its create held executing in Stripe."""
    held = fake.hold("/v1/customers")
    trigger = StripeCustomers(fake.api_key, fake.url, timeout=10.0)
    created = pool.submit(trigger.ensure_customer, USER, "ada@example.com", "Ada Lovelace", "ada")
    assert held.read.wait(2)
    return held, created


def test_checkout_during_the_triggers_create_waits_and_sells_to_that_customer(client, cognito, fake):
    with ThreadPoolExecutor() as pool:
        held, created = trigger_creating(fake, pool)
        fake.release_after_key_in_use(held)

        response = checkout(client, cognito)

    assert response.status_code == 200, response.get_json()
    assert fake.keys_in_use >= 1 and [c["id"] for c in fake.customers] == [created.result()]
    assert [s["customer"] for s in fake.sessions()] == [created.result()]


def test_checkout_while_the_customer_is_still_being_created_is_a_503_to_retry(client, cognito, fake):
    with ThreadPoolExecutor() as pool:
        held, created = trigger_creating(fake, pool)
        try:
            response = checkout(client, cognito)
        finally:
            held.release()

    assert (response.status_code, response.get_json()["error"]) == (503, "stripe_unavailable")
    assert "still being created" in response.get_json()["message"] and response.headers["Retry-After"] == "2"
    assert not fake.sessions() and [c["id"] for c in fake.customers] == [created.result()]
    documented = client.get("/openapi.json").get_json()["paths"]["/v1/checkout/sessions"]["post"]["responses"]
    assert "Retry-After" in documented["503"]["headers"]  # the header a client is told to honour


def trigger_failed(fake):
    """The post confirmation trigger's create began in Stripe and failed: Stripe saved the 500
    under its key and replays it to every request with that key for 24 hours."""
    fake.fail_executing("/v1/customers")
    with pytest.raises(stripe.APIError):
        StripeCustomers(fake.api_key, fake.url, timeout=10.0).ensure_customer(USER, "ada@example.com", "Ada", "ada")


def test_checkout_after_the_triggers_create_failed_and_was_saved_sells_to_a_new_customer(client, cognito, fake):
    trigger_failed(fake)

    response = checkout(client, cognito)

    assert response.status_code == 200, response.get_json()
    (customer,) = fake.customers
    assert [s["customer"] for s in fake.sessions()] == [customer["id"]]
    assert portal(client, cognito).status_code == 200 and len(fake.customers) == 1


def test_a_checkout_whose_create_stripe_failed_works_when_asked_again(client, cognito, fake):
    fake.fail_executing("/v1/customers")

    first, second = checkout(client, cognito), checkout(client, cognito)

    assert (first.status_code, first.get_json()["error"]) == (503, "stripe_unavailable")
    assert second.status_code == 200, second.get_json()
    assert len(fake.customers) == 1 and [s["customer"] for s in fake.sessions()] == [fake.customers[0]["id"]]


def test_checkout_and_the_trigger_moving_past_a_saved_failure_together_make_one_customer(client, cognito, fake):
    trigger_failed(fake)
    fake.gate("/v1/customers", 2, exact=True)  # both read the new customers before either creates
    with ThreadPoolExecutor() as pool:
        held = fake.hold("/v1/customers", "POST")  # the first create under the next key executes until released
        fake.release_after_key_in_use(held)
        trigger = StripeCustomers(fake.api_key, fake.url, timeout=10.0)
        again = pool.submit(trigger.ensure_customer, USER, "ada@example.com", "Ada", "ada")

        response = checkout(client, cognito)

    assert response.status_code == 200, response.get_json()
    assert fake.gates_opened == 1 and fake.keys_in_use >= 1
    assert [c["id"] for c in fake.customers] == [again.result()]
    assert [s["customer"] for s in fake.sessions()] == [again.result()]


@pytest.mark.parametrize("refusal", [
    StripeError(409, "invalid_request_error", "The request conflicts with another.", "resource_conflict"),
    StripeError(400, "invalid_request_error", "Invalid email address.", "email_invalid", "email"),
], ids=["another-409", "400"])
def test_a_customer_creation_stripe_refuses_stays_a_502(client, cognito, fake, refusal):
    fake.refuse_next("POST", "/v1/customers", refusal)

    response = checkout(client, cognito)

    assert (response.status_code, response.get_json()["error"]) == (502, "stripe_refused")
    assert fake.calls("POST", "/v1/customers") == 1 and not fake.customers and not fake.sessions()


def test_a_stripe_call_whose_idempotency_key_is_still_in_use_is_unavailable_not_refused(fake):
    api = StripeHttpApi(fake.api_key, fake.url)
    params = {"mode": "subscription", "line_items": [{"price": "price_monthly", "quantity": 1}]}
    held = fake.hold("/v1/checkout/sessions")
    with ThreadPoolExecutor() as pool:
        first = pool.submit(api.create_checkout_session, params, "session-of-order-1")
        assert held.read.wait(2)
        try:
            with pytest.raises(StripeApiError) as raised:
                api.create_checkout_session(params, "session-of-order-1")
        finally:
            held.release()

    assert "(409)" in str(raised.value) and not raised.value.refused  # asked again later, it gets the first's answer
    assert [s["id"] for s in fake.sessions()] == [first.result()["id"]]


def test_stripe_unconfigured_is_503(make_app, env, cognito):
    client = make_app(**{k: v for k, v in env.items() if k != "STRIPE_API_KEY"}).test_client()
    for response in (checkout(client, cognito), portal(client, cognito)):
        assert (response.status_code, response.get_json()["error"]) == (503, "stripe_not_configured")


def test_a_key_stripe_refuses_is_502_not_a_retryable_503(make_app, env, cognito):
    client = make_app(**{**env, "STRIPE_API_KEY": "sk_test_revoked"}).test_client()
    response = checkout(client, cognito)
    assert (response.status_code, response.get_json()["error"]) == (502, "stripe_refused")


def test_a_product_id_in_the_catalog_is_not_a_price_to_sell(client, cognito, fake):
    response = checkout(client, cognito, {**BODY, "price_id": "prod_family"})  # listed in the catalog
    assert (response.status_code, response.get_json()["error"]) == (400, "unknown_price")
    assert not fake.sessions()


def stripe_refusing_both_sessions(fake, make_app, env):
    for path in ("/v1/checkout/sessions", "/v1/billing_portal/sessions"):
        fake.refuse_next("POST", path, StripeError(400, "invalid_request_error", "No such price: 'price_monthly'",
                                                   "resource_missing", "line_items[0][price]"))
    return make_app(**env)


def stripe_down(fake, make_app, env):
    fake.fail_with(500)
    return make_app(**env)


def key_revoked(fake, make_app, env):
    return make_app(**{**env, "STRIPE_API_KEY": "sk_test_revoked_key_9876"})


@pytest.mark.parametrize("arrange, status", [(stripe_down, 503), (stripe_refusing_both_sessions, 502),
                                             (key_revoked, 502)], ids=["outage", "refused", "revoked-key"])
def test_a_stripe_failure_answers_the_client_in_our_words_and_logs_stripes(make_app, env, cognito, fake, caplog,
                                                                          arrange, status):
    """Stripe's message names our account's objects, the key's last characters and the call
    made: it goes to the log for the operator; the user of the app is told only what failed."""
    client = arrange(fake, make_app, env).test_client()
    for response in (checkout(client, cognito), portal(client, cognito)):
        assert response.status_code == status
        message = response.get_json()["message"]
        for stripes in ("Simulated outage", "No such", "Invalid API Key", "9876", "/v1/", "req_", "(5", "(4"):
            assert stripes not in message, message
        assert message and "Stripe" in message
    logged = " ".join(str(getattr(record, "fields", {})) for record in caplog.records)
    assert any(text in logged for text in ("Simulated outage", "No such price", "Invalid API Key")), logged


OTHER = "5e0f1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"


def test_deleting_the_account_expires_its_open_checkout_sessions(client, cognito, fake):
    # Opened just before the deletion, a session stayed payable at Stripe for up to a day:
    # the user could still subscribe, billed for what the tombstone grants nothing.
    opened, paid = (checkout(client, cognito).get_json()["id"] for _ in range(2))
    fake.complete(paid, "sub_paid_before_the_deletion")
    others = checkout(client, cognito, user=OTHER).get_json()["id"]

    deleted = client.delete("/v1/me", headers=cognito.header(USER))

    assert deleted.status_code == 200, deleted.get_json()
    statuses = {session["id"]: session["status"] for session in fake.sessions()}
    assert statuses == {opened: "expired", paid: "complete", others: "open"}
    (customer,) = [c["id"] for c in fake.customers if c["metadata"]["cognito_sub"] == USER]
    listed = fake.requests_to("/v1/checkout/sessions")[-2]
    assert (listed.method, listed.params["customer"], listed.params["status"]) == ("GET", customer, "open")
    assert client.delete("/v1/me", headers=cognito.header(USER)).status_code == 200
    assert fake.state.counts["checkout.session.expired"] == 1


def test_stripe_down_while_expiring_the_sessions_deletes_nothing(client, cognito, fake, api):
    opened = checkout(client, cognito).get_json()["id"]
    fake.fail_with(500)

    failed = client.delete("/v1/me", headers=cognito.header(USER))

    assert (failed.status_code, failed.get_json()["error"]) == (503, "store_api_unavailable")
    fake.recover()
    assert checkout(client, cognito).status_code == 200  # not deleted: the user may still buy
    assert client.delete("/v1/me", headers=cognito.header(USER)).status_code == 200
    assert {s["id"]: s["status"] for s in fake.sessions()}[opened] == "expired"


def test_checkout_for_a_deleted_account_answers_the_documented_403(client, cognito, fake):
    assert client.delete("/v1/me", headers=cognito.header(USER)).status_code == 200
    asked = len(fake.requests)

    response = checkout(client, cognito)  # the user's token is still valid for up to an hour

    assert (response.status_code, response.get_json()["error"]) == (403, "account_deleted")
    assert "deleted" in response.get_json()["message"]
    documented = client.get("/openapi.json").get_json()["paths"]["/v1/checkout/sessions"]["post"]["responses"]
    assert "403" in documented
    assert not fake.sessions() and len(fake.requests) == asked  # Stripe is not asked


def test_a_session_that_cannot_be_recorded_is_expired_and_not_handed_out(client, cognito, fake, refuse_writes):
    assert checkout(client, cognito).status_code == 200  # the customer, linked
    refuse_writes.on("checkout_sessions")
    try:
        response = checkout(client, cognito)
    finally:
        refuse_writes.off()

    assert (response.status_code, response.get_json()["error"]) == (503, "store_unavailable")
    assert sorted(s["status"] for s in fake.sessions()) == ["expired", "open"]  # the deletion would not know it
