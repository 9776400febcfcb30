"""Fuzzing POST /webhooks/<source> through the WSGI app: arbitrary bytes and headers, and
near-valid deliveries (a valid signature over junk, valid JSON with wrong types). The
gateway never answers 500, and nothing is stored without valid authentication."""
from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.conftest import API_KEY, count_events
from tests.support import revenuecat as rc
from tests.support.apple_pki import mint_chain
from tests.support.apple_store import AppStore
from tests.support.google_gateway import _play_server, play, push_signer  # noqa: F401 (fixtures)
from tests.support.google_pubsub import envelope, subscription
from tests.support.stripe_objects import event as stripe_event
from tests.support.stripe_objects import customer
from tests.support.stripe_signing import new_secret, signed

SECRET = new_secret()
SOURCES = ("stripe", "apple", "google", "revenuecat")
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
NEAR = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "30")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=200)
headers = st.dictionaries(st.sampled_from(["Authorization", "Stripe-Signature", "Content-Type", "X-Other"]),
                          printable, max_size=4)
# Any text, NUL and lone surrogates included (PostgreSQL can store neither).
text = st.text(max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12)


@pytest.fixture(scope="module")
def chain():
    return mint_chain()


@pytest.fixture
def app(make_app, chain, tmp_path, push_signer, play):
    return make_app(REVENUECAT_WEBHOOK_AUTH=rc.AUTH, STRIPE_WEBHOOK_SECRETS=SECRET, MAX_BODY_BYTES="65536",
                    GATEWAY_API_KEYS=API_KEY,
                    **AppStore(chain).env(chain.write_root(tmp_path)), **push_signer.env(), **play.env())


def post(app, source: str, body: bytes, given_headers: dict):
    return app.test_client().post(f"/webhooks/{source}", data=body, headers=given_headers)


@FUZZ
@given(source=st.sampled_from(SOURCES), body=st.binary(max_size=2048), given_headers=headers)
def test_arbitrary_bytes_and_headers_are_refused_and_store_nothing(app, source, body, given_headers):
    answer = post(app, source, body, given_headers)
    assert answer.status_code in (400, 401, 413), answer.get_data(as_text=True)
    assert answer.is_json and "error" in answer.get_json()
    assert count_events(app) == 0


@NEAR
@given(junk=json_values)
def test_a_valid_stripe_signature_over_junk_json_is_400_or_stored(app, junk):
    before = count_events(app)
    body, given_headers = signed(json.dumps(junk), SECRET)
    assert post(app, "stripe", body, given_headers).status_code == 400
    assert count_events(app) == before


def mutated(valid: dict, data) -> dict:
    """A valid object with one field replaced by JSON of any type, or dropped."""
    name = data.draw(st.sampled_from(sorted(valid)))
    copy = dict(valid)
    if data.draw(st.booleans()):
        copy.pop(name)
    else:
        copy[name] = data.draw(json_values)
    return copy


def assert_answered(app, answer, before: int) -> None:
    assert answer.status_code in (200, 400), answer.get_data(as_text=True)
    if answer.status_code == 400:
        assert count_events(app) == before


@NEAR
@given(data=st.data())
def test_stripe_events_with_wrong_types_never_500(app, data):
    before = count_events(app)
    valid = stripe_event("customer.updated", customer(customer_id="cus_fuzz", cognito_sub="u"))
    event = mutated(valid, data)
    assert_answered(app, post(app, "stripe", *signed(event, SECRET)), before)


# Found by fuzzing: an api_version that was not a string once answered 500.
def test_a_signed_stripe_event_whose_api_version_is_a_list_is_not_a_500(app):
    event = stripe_event("customer.updated", customer(customer_id="cus_fuzz", cognito_sub="u"))
    answer = post(app, "stripe", *signed({**event, "api_version": ["2024-06-20"]}, SECRET))
    assert answer.status_code == 200, answer.get_data(as_text=True)


@NEAR
@given(data=st.data())
def test_revenuecat_events_with_wrong_types_never_500(app, data):
    before = count_events(app)
    event = mutated(rc.event(data.draw(st.sampled_from(["RENEWAL", "CANCELLATION", "TRANSFER", "TEST"]))), data)
    answer = post(app, "revenuecat", rc.body(event), {"Authorization": rc.AUTH})
    assert_answered(app, answer, before)


@NEAR
@given(data=st.data())
def test_signed_apple_notifications_with_wrong_types_never_500(app, chain, data):
    before, store = count_events(app), AppStore(chain)
    notification = store.notification("DID_RENEW", transaction=mutated(store.transaction("4000"), data),
                                      renewal=store.renewal("4000"))
    notification = mutated(notification, data)
    answer = post(app, "apple", store.body(notification), {"Content-Type": "application/json"})
    assert answer.status_code in (200, 400, 401), answer.get_data(as_text=True)
    if answer.status_code != 200:
        assert count_events(app) == before


# Found by fuzzing: a notificationType that was not a string once answered 500.
def test_a_signed_apple_notification_whose_type_is_a_list_is_not_a_500(app, chain):
    store = AppStore(chain)
    notification = {**store.notification("DID_RENEW", transaction=store.transaction("4001")),
                    "notificationType": ["DID_RENEW"]}
    answer = post(app, "apple", store.body(notification), {"Content-Type": "application/json"})
    assert (answer.status_code, answer.get_json()["error"]) == (400, "apple_malformed")
    assert count_events(app) == 0


@pytest.mark.parametrize("value", ["\u0000", "\ud800"])
def test_a_delivery_holding_a_character_postgresql_cannot_store_is_applied_with_it_replaced(app, api, value):
    """Found by fuzzing: PostgreSQL stores neither NUL nor a lone surrogate, so such a
    delivery once answered 503 and was resent for days. Now it is applied, the
    character replaced by U+FFFD, and a resend is a duplicate."""
    event = rc.event("INITIAL_PURCHASE", user="fuzz-user", presented_offering_id=f"offer{value}")
    body = rc.body(event)  # json.dumps escapes both, as JSON allows
    first = post(app, "revenuecat", body, {"Authorization": rc.AUTH, "Content-Type": "application/json"})
    assert (first.status_code, first.get_json()["status"]) == (200, "processed")
    again = post(app, "revenuecat", body, {"Authorization": rc.AUTH, "Content-Type": "application/json"})
    assert again.get_json()["status"] == "duplicate"
    assert api(app.test_client(), "fuzz-user")["is_premium"] is True
    with app.extensions["gateway"].store.transaction() as tx:
        stored = tx.find_event("revenuecat", event["id"])
    assert stored.data["presented_offering_id"] == "offer\ufffd"
    assert count_events(app) == 1


@NEAR
@given(data=st.data())
def test_authenticated_google_pushes_with_wrong_types_never_500(app, push_signer, data):
    before = count_events(app)
    push = json.loads(envelope(subscription("token-fuzz")))
    push["message"] = mutated(push["message"], data)
    body = json.dumps(mutated(push, data) if data.draw(st.booleans()) else push).encode()
    assert_answered(app, post(app, "google", body, push_signer.headers()), before)
