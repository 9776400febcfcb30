"""Bad input never answers 500 and never defers forever (issue 18), one example each: deep
JSON in a body or a token, timestamps past datetime's range, values longer than their
column. Each answers 400 (401 for a token) and stores nothing, on SQLite as on PostgreSQL;
the fuzz tests (``test_fuzz_*.py``) search the same space at random."""
from __future__ import annotations

import base64
import json

import pytest

from devtools import google_pubsub as rtdn
from devtools import revenuecat as rc
from devtools import stripe_objects as so
from devtools.apple_pki import mint_chain
from devtools.apple_store import AppStore
from devtools.stripe_signing import new_secret, signed
from tests.e2e import fuzzing as fz
from tests.e2e.conftest import API_KEY, count_events
from tests.support import chunked
from tests.support.google_gateway import _play_server, play, push_signer  # noqa: F401 (fixtures)

SECRET = new_secret()
RC = {"Authorization": rc.AUTH, "Content-Type": "application/json"}
DEEP = fz.nested(1000)  # past json's recursion limit: RecursionError, not ValueError
PAST_9999_MS = 253402300800000  # 10000-01-01T00:00:00Z
LIMIT = 1_048_576  # MAX_BODY_BYTES's default


@pytest.fixture(scope="module")
def chain():
    return mint_chain()


@pytest.fixture
def app(make_app, chain, tmp_path, push_signer, play, cognito):
    return make_app(REVENUECAT_WEBHOOK_AUTH=rc.AUTH, STRIPE_WEBHOOK_SECRETS=SECRET, GATEWAY_API_KEYS=API_KEY,
                    **AppStore(chain).env(chain.write_root(tmp_path)), **push_signer.env(), **play.env(),
                    **cognito.env())


def post(app, source: str, body: bytes, headers: dict):
    return app.test_client().post(f"/webhooks/{source}", data=body, headers=headers)


def refused(app, answer, status: int = 400, error: str | None = None) -> None:
    assert answer.status_code == status, answer.get_data(as_text=True)
    if error:
        assert answer.get_json()["error"] == error
    assert count_events(app) == 0


# Deep nesting ----------------------------------------------------------------------------

def test_deep_json_in_each_webhook_body_is_400(app, chain, push_signer):
    refused(app, post(app, "revenuecat", fz.splice({"event": rc.event("TEST")}, ("deep",), DEEP), RC),
            error="malformed_json")
    refused(app, post(app, "stripe", *signed(fz.splice(so.event("customer.updated", so.customer(customer_id="cus_d")),
                                                       ("deep",), DEEP).decode(), SECRET)), error="malformed_json")
    refused(app, post(app, "apple", b'{"signedPayload": "x", "deep": ' + DEEP + b"}", {}), error="malformed_json")
    push = json.loads(rtdn.envelope(rtdn.console_test()))
    refused(app, post(app, "google", fz.splice(push, ("deep",), DEEP), push_signer.headers()), error="malformed_json")
    push["message"]["data"] = base64.b64encode(b'{"packageName": "p", "deep": ' + DEEP + b"}").decode()
    refused(app, post(app, "google", json.dumps(push).encode(), push_signer.headers()),
            error="malformed_notification")


def test_deep_json_in_a_signed_apple_jws_is_401(app, chain):
    header = json.dumps({"alg": "ES256", "x5c": chain.x5c}).encode()
    for jws_header, payload in ((header[:-1] + b', "deep": ' + DEEP + b"}", b"{}"), (header, DEEP)):
        signed_payload = fz.raw_jws(jws_header, payload, chain.leaf.key, "ES256")
        refused(app, post(app, "apple", json.dumps({"signedPayload": signed_payload}).encode(), {}), 401)


def test_deep_json_in_a_google_push_token_is_401(app, push_signer):
    key = push_signer.keys[push_signer.kid][0]
    for header, payload in ((b'{"alg":"RS256","kid":"' + push_signer.kid.encode() + b'","deep":' + DEEP + b"}", b"{}"),
                            ({"kid": push_signer.kid}, b'{"deep":' + DEEP + b"}")):
        token = fz.raw_jwt(header, payload, key, "RS256")
        refused(app, post(app, "google", rtdn.envelope(rtdn.console_test()), fz.bearer(token)), 401, "invalid_token")


def test_deep_json_in_a_cognito_token_is_401_and_in_a_client_body_400(app, cognito):
    key = cognito.keys[cognito.kid]
    client = app.test_client()
    for header, payload in ((b'{"alg":"RS256","kid":"' + cognito.kid.encode() + b'","deep":' + DEEP + b"}", b"{}"),
                            ({"kid": cognito.kid}, b'{"deep":' + DEEP + b"}")):
        answer = client.get("/v1/me/entitlements", headers=fz.bearer(fz.raw_jwt(header, payload, key, "RS256")))
        assert (answer.status_code, answer.get_json()["error"]) == (401, "invalid_token")
    answer = client.post("/v1/purchases/google", data=b'{"purchaseToken": ' + DEEP + b"}",
                         headers=cognito.header("0c5b2d6e-7f1a-4e8b-9c3d-2a1b0f9e8d7c"))
    assert (answer.status_code, answer.get_json()["error"]) == (400, "malformed_purchase")


@pytest.mark.parametrize("path", ["/v1/purchases/google", "/v1/purchases/apple", "/v1/checkout/sessions",
                                  "/v1/billing-portal/sessions"])
def test_a_client_body_past_the_limit_is_413_without_being_read_whole(app, cognito, path):
    """Any signed-up user holds a token: a body of gigabytes must not be read into a
    worker's memory. Client bodies are held to MAX_BODY_BYTES as webhooks are."""
    headers = {**cognito.header("0c5b2d6e-7f1a-4e8b-9c3d-2a1b0f9e8d7c"), "Content-Type": "application/json"}
    statuses, body = chunked.send(app, path, headers)
    assert body.served <= LIMIT + 1 and statuses == ["413 REQUEST ENTITY TOO LARGE"]
    answer = app.test_client().post(path, data=b" " * (LIMIT + 1), headers=headers)
    assert (answer.status_code, answer.get_json()["error"]) == (413, "payload_too_large")


# Timestamps out of range -----------------------------------------------------------------

@pytest.mark.parametrize("field", ["event_timestamp_ms", "expiration_at_ms", "grace_period_expiration_at_ms"])
@pytest.mark.parametrize("value", [PAST_9999_MS, 10**20, -1, -10**20])
def test_revenuecat_times_out_of_range_are_400(app, field, value):
    refused(app, post(app, "revenuecat", rc.body(rc.event("BILLING_ISSUE", **{field: value})), RC),
            error="malformed_event")


@pytest.mark.parametrize("created", [10**12, 2**63, -1])
def test_a_stripe_created_out_of_range_is_400(app, created):
    event = so.event("customer.updated", so.customer(customer_id="cus_t", cognito_sub="u"), created=created)
    refused(app, post(app, "stripe", *signed(event, SECRET)), error="malformed_event")


def test_a_stripe_period_end_out_of_range_is_400_before_it_is_stored(app):
    subscription = so.subscription("basil", sub_id="sub_t", customer="cus_t", end=10**13)
    refused(app, post(app, "stripe", *signed(so.event("customer.subscription.updated", subscription), SECRET)),
            error="malformed_event")


@pytest.mark.parametrize("millis", [str(PAST_9999_MS), "9" * 20, "١٢٣", "²"])
def test_a_google_event_time_out_of_range_or_not_ascii_digits_is_400(app, push_signer, millis):
    notification = {**rtdn.voided("tok-time"), "eventTimeMillis": millis}
    refused(app, post(app, "google", rtdn.envelope(notification), push_signer.headers()),
            error="malformed_notification")


def test_apple_times_out_of_range_are_400(app, chain):
    store = AppStore(chain)
    transaction = store.transaction("5000", expiresDate=PAST_9999_MS)
    refused(app, post(app, "apple", store.body(store.notification("DID_RENEW", transaction=transaction)), {}),
            error="apple_malformed")
    # A signedDate past 9999 is the date Apple's library checks the chain at: it refuses it.
    late = store.notification("DID_RENEW", transaction=store.transaction("5001"), signedDate=PAST_9999_MS)
    refused(app, post(app, "apple", store.body(late), {}), 401)


# Values longer than their column ---------------------------------------------------------

@pytest.mark.parametrize("field, limit", [("app_user_id", 255), ("original_app_user_id", 255), ("product_id", 255),
                                          ("original_transaction_id", 255), ("environment", 32),
                                          ("entitlement_id", 128)])
def test_revenuecat_values_longer_than_their_column_are_400_and_at_the_limit_stored(app, api, field, limit):
    refused(app, post(app, "revenuecat", rc.body(rc.event("RENEWAL", **{field: "x" * (limit + 1)})), RC),
            error="malformed_event")
    answer = post(app, "revenuecat", rc.body(rc.event("RENEWAL", **{field: "x" * limit})), RC)
    assert answer.get_json() == {"status": "processed"}


@pytest.mark.parametrize("field", ["aliases", "entitlement_ids", "transferred_to"])
def test_revenuecat_lists_holding_a_value_longer_than_its_column_are_400(app, field):
    refused(app, post(app, "revenuecat", rc.body(rc.event("RENEWAL", **{field: ["u", "x" * 256]})), RC),
            error="malformed_event")


@pytest.mark.parametrize("fields", [{"customer": "cus_" + "x" * 252}, {"status": "x" * 65},
                                    {"metadata": {"cognito_sub": "u" * 256}}, {"id": "sub_" + "x" * 252}])
def test_stripe_values_longer_than_their_column_are_400(app, fields):
    subscription = {**so.subscription("basil", sub_id="sub_len", customer="cus_len"), **fields}
    refused(app, post(app, "stripe", *signed(so.event("customer.subscription.updated", subscription), SECRET)),
            error="malformed_event")
