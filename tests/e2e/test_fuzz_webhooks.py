"""Fuzzing POST /webhooks/<source> through the WSGI app: arbitrary bytes and headers,
near-valid deliveries (a valid signature over junk, valid JSON with wrong types), and
validly authenticated deliveries carrying hostile JSON (deep nesting, NaN, huge numbers)
or hostile values in the fields that reach a column or a datetime. The gateway never
answers 500, nothing is stored without valid authentication, a refusal stores nothing,
and nothing is stored that PostgreSQL would refuse and SQLite keep."""
from __future__ import annotations

import base64
import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from devtools import google_pubsub as rtdn
from devtools import revenuecat as rc
from devtools import stripe_objects
from devtools.apple_pki import mint_chain
from devtools.apple_store import AppStore
from devtools.google_pubsub import envelope, subscription
from devtools.stripe_objects import customer
from devtools.stripe_objects import event as stripe_event
from devtools.stripe_signing import generate_header, new_secret, signed
from tests.e2e import fuzzing as fz
from tests.e2e.conftest import API_KEY, count_events
from tests.support.google_gateway import _play_server, play, push_signer  # noqa: F401 (fixtures)

SECRET = new_secret()
SOURCES = ("stripe", "apple", "google", "revenuecat")
FUZZ = fz.FUZZ
NEAR = settings(fz.FUZZ, max_examples=max(30, fz.EXAMPLES // 2))

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
    return make_app(REVENUECAT_WEBHOOK_AUTH=rc.AUTH, STRIPE_WEBHOOK_SECRETS=SECRET, MAX_BODY_BYTES="262144",
                    GATEWAY_API_KEYS=API_KEY,
                    **AppStore(chain).env(chain.write_root(tmp_path)), **push_signer.env(), **play.env())


def post(app, source: str, body: bytes, given_headers: dict):
    return app.test_client().post(f"/webhooks/{source}", data=body, headers=given_headers)


@FUZZ
@given(source=st.sampled_from(SOURCES), body=st.binary(max_size=2048), given_headers=headers)
def test_arbitrary_bytes_and_headers_are_refused_and_store_nothing(app, source, body, given_headers):
    answer = post(app, source, body, given_headers)
    # Verification comes first: where it rests on a header (no header drawn here is valid),
    # whatever the body, 401; the App Store signs inside the body, which may not be JSON.
    assert answer.status_code in ((400, 401) if source == "apple" else (401,)), answer.get_data(as_text=True)
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


# Almost authenticated ----------------------------------------------------------------------

OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # not among Google's certificates


def stripe_forgery(data, text: str) -> tuple[bytes, dict]:
    """``text`` with a Stripe-Signature that is almost right, or the right one over other bytes."""
    kind = data.draw(st.sampled_from(["stale", "other secret", "other body", "scheme", "digit", "no time"]), label="forgery")
    now = int(time.time())
    if kind == "stale":  # past the 300 s tolerance, with room for a slow example
        return text.encode(), {"Stripe-Signature": generate_header(text, SECRET, timestamp=now - data.draw(
            st.integers(330, 10**8), label="age"))}
    if kind == "other secret":
        return text.encode(), {"Stripe-Signature": generate_header(text, new_secret())}
    if kind == "other body":  # still valid JSON, so only the signature can refuse it
        return (text + data.draw(st.sampled_from([" ", "\n", "\t"]), label="appended")).encode(), \
            {"Stripe-Signature": generate_header(text, SECRET)}
    if kind == "scheme":
        return text.encode(), {"Stripe-Signature": generate_header(text, SECRET, scheme="v0")}
    signature = generate_header(text, SECRET).split("v1=")[1]
    if kind == "no time":
        return text.encode(), {"Stripe-Signature": f"v1={signature}"}
    at = data.draw(st.integers(0, len(signature) - 1), label="digit")
    flipped = signature[:at] + ("0" if signature[at] != "0" else "1") + signature[at + 1:]
    return text.encode(), {"Stripe-Signature": generate_header(text, SECRET, signature=flipped)}


def revenuecat_forgery(data) -> str:
    kind = data.draw(st.sampled_from(["suffix", "prefix of it", "case", "token only", "other scheme"]), label="forgery")
    scheme, token = rc.AUTH.split(" ", 1)
    if kind == "suffix":
        return rc.AUTH + data.draw(st.characters(min_codepoint=33, max_codepoint=126), label="suffix")
    if kind == "prefix of it":
        return rc.AUTH[:data.draw(st.integers(0, len(rc.AUTH) - 1), label="length")]
    if kind == "case":
        at = data.draw(st.sampled_from([i for i, c in enumerate(rc.AUTH) if c.isalpha()]), label="letter")
        return rc.AUTH[:at] + rc.AUTH[at].swapcase() + rc.AUTH[at + 1:]
    return token if kind == "token only" else f"Basic {token}"


def google_forgery(data, push_signer) -> dict:
    kind = data.draw(st.sampled_from(["aud", "email", "email_verified", "iss", "expired", "other key"]), label="forgery")
    now = int(time.time())
    if kind == "other key":
        return {"Authorization": f"Bearer {push_signer.token(key=OTHER_KEY)}"}
    claims = {"aud": {"aud": "https://other.example.com/push"},
              "email": {"email": "other@example-project.iam.gserviceaccount.com"},
              "email_verified": {"email_verified": data.draw(st.sampled_from([False, None, "true", 1]))},
              "iss": {"iss": data.draw(st.sampled_from(["https://evil.example.com", "accounts.google.com.evil"]))},
              "expired": {"exp": now - data.draw(st.integers(60, 10**6), label="expired for"), "iat": now - 10**6 - 3600},
              }[kind]
    return push_signer.headers(**claims)


def apple_forgery(data, chain, other_chain) -> bytes:
    kind = data.draw(st.sampled_from(["other chain", "bundle id", "environment"]), label="forgery")
    if kind == "other chain":  # a chain of the right shape whose root the gateway does not trust
        return AppStore(other_chain).body(AppStore(other_chain).notification("TEST"))
    store = AppStore(chain, bundle_id="com.example.other") if kind == "bundle id" else \
        AppStore(chain, environment=data.draw(st.sampled_from(["Xcode", "LocalTesting", "Production "])))
    return store.body(store.notification("TEST"))


@pytest.fixture(scope="module")
def other_chain():
    return mint_chain()


@pytest.mark.parametrize("source", SOURCES)
@NEAR
@given(data=st.data())
def test_a_delivery_almost_authenticated_is_401_and_stores_nothing_and_rightly_authenticated_is_taken(
        app, chain, other_chain, push_signer, source, data):
    """Verification comes first (CONTRACT.md): a valid delivery whose signature, token or
    header is almost right (expired, another key or secret, another audience or bundle,
    the signed bytes changed) is 401 and leaves no trace; the same delivery authenticated
    rightly is taken, so nothing but the authentication refused it."""
    if source == "stripe":
        text = json.dumps(stripe_event("customer.updated", customer(customer_id=stripe_objects.new_id("cus"),
                                                                    cognito_sub=str(uuid.uuid4()))), indent=2)
        forged, good = stripe_forgery(data, text), signed(text, SECRET)
    elif source == "revenuecat":
        body = rc.body(rc.event("RENEWAL", user=str(uuid.uuid4()), transaction=str(uuid.uuid4().int)[:12]))
        forged, good = (body, {"Authorization": revenuecat_forgery(data)}), (body, {"Authorization": rc.AUTH})
    elif source == "google":
        body = envelope(rtdn.console_test())
        forged, good = (body, google_forgery(data, push_signer)), (body, push_signer.headers())
    else:
        forged, good = (apple_forgery(data, chain, other_chain), {}), (AppStore(chain).body(
            AppStore(chain).notification("TEST")), {})
    before = fz.state(app)
    answer = post(app, source, *forged)
    assert answer.status_code == 401, answer.get_data(as_text=True)
    assert fz.state(app) == before
    assert post(app, source, *good).status_code == 200


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
        (stored,) = tx.search_events(source="revenuecat", event_id=event["id"])
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


# Validly authenticated deliveries carrying hostile JSON or hostile field values ------------

def leaf_paths(value, prefix: tuple = (), depth: int = 6) -> list[tuple]:
    """The path of every value in a document (containers included), for a mutation to pick."""
    paths = [prefix] if prefix else []
    if depth and isinstance(value, dict):
        for name, inner in value.items():
            paths += leaf_paths(inner, prefix + (name,), depth - 1)
    elif depth and isinstance(value, list):
        for index, inner in enumerate(value):
            paths += leaf_paths(inner, prefix + (index,), depth - 1)
    return paths


def mutate(document, paths: list[tuple], data):
    """``document`` with one to four of ``paths`` given a hostile value (or dropped)."""
    chosen = data.draw(st.lists(st.sampled_from(paths), min_size=1, max_size=4, unique=True), label="paths")
    for path in sorted(chosen, key=len, reverse=True):  # the deepest first: a parent may be replaced
        try:
            document = put(document, path, data.draw(hostile_or_drop, label=str(path)))
        except (KeyError, IndexError, TypeError):  # a parent replaced already
            pass
    return document


def get(document, path: tuple):
    for step in path:
        document = document[step]
    return document


def at_edges(document, paths: list[tuple], data):
    """One to three string or integer fields at the edge of their range, their type kept
    (strings at and past each column's length, integers at and past datetime's), so that
    the delivery is otherwise valid and what it stores can be checked against the columns."""
    typed = [p for p in paths if type(get(document, p)) in (str, int)]
    chosen = data.draw(st.lists(st.sampled_from(typed), min_size=1, max_size=3, unique=True), label="edges")
    for path in chosen:
        value = get(document, path)
        edge = fz.time_edges if isinstance(value, int) else \
            digit_edges | fz.column_edges if value.isdigit() else fz.column_edges
        document = put(document, path, data.draw(edge, label=str(path)))
    return document


#: A number written as a string (Google's eventTimeMillis): the same edges, and digits that
#: are not ASCII ("²".isdigit() is true, int("²") raises).
digit_edges = fz.time_edges.map(str) | st.sampled_from(["\u00b2", "\u0661\u0662\u0663", "9" * 30, "0" * 5000])


def hostile_fields(document, paths: list[tuple], data):
    edges = data.draw(st.booleans(), label="types kept")
    return at_edges(document, paths, data) if edges else mutate(document, paths, data)


def put(document, path: tuple, value):
    """``document`` with ``value`` at ``path``; the field dropped when ``value`` is DROP."""
    copy = json.loads(json.dumps(document))
    target = copy
    for step in path[:-1]:
        target = target[step]
    if value is DROP:
        target.pop(path[-1]) if isinstance(target, dict) else target.__setitem__(path[-1], None)
    else:
        target[path[-1]] = value
    return copy


DROP = object()
hostile_or_drop = fz.hostile | st.just(DROP)


def rc_document(data) -> dict:
    kind = data.draw(st.sampled_from(["INITIAL_PURCHASE", "RENEWAL", "CANCELLATION", "BILLING_ISSUE",
                                      "EXPIRATION", "TRANSFER", "TEST"]), label="kind")
    user = f"fuzz-{uuid.uuid4()}"
    evt = rc.transfer([user], ["fuzz-other"]) if kind == "TRANSFER" else \
        rc.event(kind, user=user, transaction=str(uuid.uuid4().int)[:12])
    return {"api_version": "1.0", "event": evt}


def stripe_document(data) -> dict:
    so = stripe_objects
    customer_id, sub_id = so.new_id("cus"), so.new_id("sub")
    kind = data.draw(st.sampled_from(["customer.subscription.updated", "customer.subscription.deleted",
                                      "customer.updated", "checkout.session.completed", "invoice.paid",
                                      "charge.refunded", "refund.failed", "charge.refund.updated",
                                      "product.created"]), label="kind")
    shape = data.draw(st.sampled_from(so.SHAPES), label="shape")
    if kind.startswith("customer.subscription"):
        obj = so.subscription(shape, sub_id=sub_id, customer=customer_id, cognito_sub=str(uuid.uuid4()))
    elif kind == "customer.updated":
        obj = customer(customer_id=customer_id, cognito_sub=str(uuid.uuid4()))
    elif kind == "checkout.session.completed":
        obj = so.checkout_session(session_id=so.new_id("cs"), customer=customer_id, subscription_id=sub_id,
                                  client_reference_id=str(uuid.uuid4()))
    elif kind == "invoice.paid":
        obj = so.invoice(shape, invoice_id=so.new_id("in"), customer=customer_id, subscription_id=sub_id)
    elif kind in ("refund.failed", "charge.refund.updated"):
        obj = so.refund(refund_id=so.new_id("re"), charge_id=so.new_id("ch"), payment_intent=so.new_id("pi"),
                        status="failed")
    else:
        obj = {"id": so.new_id("obj"), "object": kind.split(".")[0]}
    return stripe_event(kind, obj, shape=shape)


def send_stripe(app, document: dict | bytes):
    text = document.decode() if isinstance(document, bytes) else json.dumps(document)
    return post(app, "stripe", *signed(text, SECRET))


def send_revenuecat(app, document: dict | bytes):
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return post(app, "revenuecat", body, {"Authorization": rc.AUTH, "Content-Type": "application/json"})


@pytest.mark.parametrize("make, send", [(rc_document, send_revenuecat), (stripe_document, send_stripe)],
                         ids=["revenuecat", "stripe"])
@FUZZ
@given(data=st.data())
def test_events_with_hostile_fields_are_refused_unstored_or_fit_every_column(app, data, make, send):
    document = make(data)
    before = fz.state(app)
    fz.check_answer(app, send(app, hostile_fields(document, leaf_paths(document), data)), before, (200, 400))


@NEAR
@given(data=st.data(), source=st.sampled_from(["revenuecat", "stripe", "apple"]))
def test_authenticated_bodies_holding_json_python_reads_but_json_forbids_are_400(app, chain, data, source):
    """Deep nesting (json's RecursionError), NaN, Infinity, 1e400, huge integers: spliced as
    raw text into a delivery that is otherwise valid and correctly authenticated."""
    if source == "apple":  # the body around the JWS; the JWS's own JSON is fuzzed below
        document = json.loads(apple_body(AppStore(chain), apple_parts(AppStore(chain), data)))
        paths = [("signedPayload",), ("extra",)]
    else:
        document = rc_document(data) if source == "revenuecat" else stripe_document(data)
        paths = leaf_paths(document)
    path = data.draw(st.sampled_from(paths), label="path")
    raw = data.draw(fz.raw_hostile, label="raw")
    before = fz.state(app)
    body = fz.splice(document, path, raw)
    answer = {"revenuecat": send_revenuecat, "stripe": send_stripe,
              "apple": lambda a, b: post(a, "apple", b, {})}[source](app, body)
    fz.check_answer(app, answer, before, (200, 400, 401) if source == "apple" else (200, 400))


def test_a_thousand_brackets_in_an_authenticated_body_are_400_not_500(app):
    """The finding behind these tests: json.loads raises RecursionError, not ValueError."""
    for source, send, document in (("revenuecat", send_revenuecat, {"api_version": "1.0", "event": rc.event("TEST")}),
                                   ("stripe", send_stripe, stripe_event("customer.updated", customer(customer_id="cus_deep")))):
        answer = send(app, fz.splice(document, ("deep",), fz.nested(1000)))
        assert (answer.status_code, answer.get_json()["error"]) == (400, "malformed_json"), source
    assert count_events(app) == 0


def apple_parts(store: AppStore, data) -> dict:
    kind = data.draw(st.sampled_from(["DID_RENEW", "SUBSCRIBED", "REFUND", "EXPIRED", "DID_FAIL_TO_RENEW",
                                      "TEST"]), label="kind")
    return apple_parts_of(store, kind)


def apple_body(store: AppStore, parts: dict) -> bytes:
    notification = dict(parts["notification"])
    data_part = notification.get("data")
    if isinstance(data_part, dict):
        data_part = dict(data_part)
        data_part["signedTransactionInfo"] = store.chain.sign(parts["transaction"])
        data_part["signedRenewalInfo"] = store.chain.sign(parts["renewal"])
        notification["data"] = data_part
    return store.body(notification)


def apple_header(chain) -> bytes:
    return json.dumps({"alg": "ES256", "x5c": chain.x5c}).encode()


@FUZZ
@given(data=st.data())
def test_signed_apple_notifications_with_hostile_fields_are_refused_unstored_or_fit_every_column(app, chain, data):
    store = AppStore(chain)
    parts = apple_parts(store, data)
    paths = [p for p in leaf_paths(parts) if len(p) > 1]  # each part stays an object to sign
    before = fz.state(app)
    body = apple_body(store, hostile_fields(parts, paths, data))
    fz.check_answer(app, post(app, "apple", body, {"Content-Type": "application/json"}), before, (200, 400, 401))


@NEAR
@given(data=st.data(), inner=st.booleans())
def test_signed_apple_payloads_holding_json_python_reads_but_json_forbids_are_refused(app, chain, data, inner):
    """The JWS payload itself (of the notification, or of its transaction) is deep or holds
    NaN: each is really signed by the test's chain, so only the JSON is wrong."""
    store = AppStore(chain)
    parts = apple_parts(store, data)
    raw = data.draw(fz.raw_hostile, label="raw")
    target = "transaction" if inner else "notification"
    path = data.draw(st.sampled_from(leaf_paths(parts[target])), label="path")
    payload = fz.splice(parts[target], path, raw)
    signed_part = fz.raw_jws(apple_header(chain), payload, chain.leaf.key, "ES256")
    if inner:
        notification = store.notification("DID_RENEW")
        notification["data"]["signedTransactionInfo"] = signed_part
        body = store.body(notification)
    else:
        body = json.dumps({"signedPayload": signed_part}).encode()
    before = fz.state(app)
    fz.check_answer(app, post(app, "apple", body, {"Content-Type": "application/json"}), before, (200, 400, 401))


@NEAR
@given(depth=fz.depths, where=st.sampled_from(["header", "payload"]))
def test_apple_jws_nested_deep_in_header_or_payload_is_refused_unsigned_or_signed(app, chain, depth, where):
    header, payload = apple_header(chain), json.dumps(AppStore(chain).notification("TEST")).encode()
    if where == "header":
        header = header[:-1] + b', "deep": ' + fz.nested(depth) + b"}"
    else:
        payload = payload[:-1] + b', "deep": ' + fz.nested(depth) + b"}"
    body = json.dumps({"signedPayload": fz.raw_jws(header, payload, chain.leaf.key, "ES256")}).encode()
    before = fz.state(app)
    fz.check_answer(app, post(app, "apple", body, {}), before, (200, 400, 401))


def google_parts(data, play) -> dict:
    kind = data.draw(st.sampled_from(["subscription", "voided", "one_time", "test"]), label="kind")
    parts = google_parts_of(play, kind)
    if not data.draw(st.booleans(), label="known to Play"):
        play.purchases.clear()
    return parts


def google_body(parts: dict, notification: bytes | None = None) -> bytes:
    push = parts["push"]
    if isinstance(push, dict) and isinstance(push.get("message"), dict):
        raw = notification if notification is not None else json.dumps(parts["notification"]).encode()
        push = {**push, "message": {**push["message"], "data": base64.b64encode(raw).decode()}}
    return json.dumps(push).encode()


@FUZZ
@given(data=st.data())
def test_authenticated_google_pushes_with_hostile_fields_are_refused_unstored_or_fit_every_column(
        app, push_signer, play, data):
    parts = google_parts(data, play)
    paths = [p for p in leaf_paths(parts) if len(p) > 1 and p[:3] != ("push", "message", "data")]
    before = fz.state(app)
    body = google_body(hostile_fields(parts, paths, data))
    fz.check_answer(app, post(app, "google", body, push_signer.headers()), before, (200, 400))


@NEAR
@given(data=st.data(), in_data=st.booleans())
def test_authenticated_google_pushes_holding_json_python_reads_but_json_forbids_are_400(
        app, push_signer, play, data, in_data):
    parts = google_parts(data, play)
    raw = data.draw(fz.raw_hostile, label="raw")
    if in_data:  # inside the base64 DeveloperNotification
        path = data.draw(st.sampled_from(leaf_paths(parts["notification"])), label="path")
        body = google_body(parts, fz.splice(parts["notification"], path, raw))
    else:  # in the Pub/Sub envelope
        path = data.draw(st.sampled_from([p for p in leaf_paths(parts["push"]) if p[:2] != ("message", "data")]))
        body = fz.splice(json.loads(google_body(parts)), path, raw)
    before = fz.state(app)
    fz.check_answer(app, post(app, "google", body, push_signer.headers()), before, (200, 400))


@FUZZ
@given(data=st.data())
def test_google_push_tokens_garbled_deep_or_signed_with_hostile_claims_never_500(app, push_signer, data):
    """The push token is parsed before its signature is checked: garbage in the shape of a
    JWT, deep JSON in its header or claims (signed with the real key), hostile claims. Only
    a claim the gateway need not check (or an ``email_verified`` still true) may pass."""
    kind = data.draw(st.sampled_from(["garbage", "deep", "claims"]), label="kind")
    key = push_signer.keys[push_signer.kid][0]
    accepted = False  # whether the token may still be good: only a claim the gateway need not check, or a true one
    if kind == "garbage":
        token = data.draw(fz.token_garbage, label="token")
    elif kind == "deep":
        depth = data.draw(fz.depths, label="depth")
        header = {"kid": push_signer.kid}
        payload = b'{"iss":"https://accounts.google.com","deep":' + fz.nested(depth) + b"}"
        if data.draw(st.booleans(), label="in header"):
            header = b'{"alg":"RS256","kid":"' + push_signer.kid.encode() + b'","deep":' + fz.nested(depth) + b"}"
            payload = b"{}"
        token = fz.raw_jwt(header, payload, key, "RS256")
    else:
        claim = data.draw(st.sampled_from(["aud", "email", "email_verified", "exp", "iat", "iss", "sub", "azp"]))
        claims = jwt.decode(push_signer.token(), options={"verify_signature": False})
        claims[claim] = data.draw(fz.hostile, label="value")  # PyJWT's encoder would refuse some
        token = fz.raw_jwt({"kid": push_signer.kid}, claims, key, "RS256")
        # No hostile value is the audience, the service account or Google's issuer.
        accepted = claim in ("exp", "iat", "sub", "azp") or claims[claim] is True and claim == "email_verified"
    before = fz.state(app)
    body = envelope(rtdn.console_test())
    scheme = data.draw(st.sampled_from(["Bearer ", "bearer ", "", "Basic "]), label="scheme")
    fz.check_answer(app, post(app, "google", body, {"Authorization": scheme + token}), before,
                    (200, 401) if accepted and scheme.lower() == "bearer " else (401,))


@pytest.mark.parametrize("source", SOURCES)
def test_every_string_field_at_and_past_each_column_length_is_refused_or_fits(app, chain, push_signer, play, source):
    """Exhaustive where the fuzz samples: each string of a valid delivery, in turn, at and one
    past each column length. Either the delivery is refused and stores nothing, or every
    stored string fits its column (SQLite would keep what PostgreSQL refuses)."""
    store = AppStore(chain)
    documents = {
        "revenuecat": lambda: {"api_version": "1.0", "event": rc.event(
            "RENEWAL", user=str(uuid.uuid4()), transaction=str(uuid.uuid4().int)[:12])},
        "stripe": lambda: stripe_event("customer.subscription.updated", stripe_objects.subscription(
            "basil", sub_id=f"sub_{uuid.uuid4().hex}", customer=f"cus_{uuid.uuid4().hex}", cognito_sub=str(uuid.uuid4()))),
        "apple": lambda: apple_parts_of(store, "DID_RENEW"),
        "google": lambda: google_parts_of(play, "voided"),
    }
    send = {"revenuecat": send_revenuecat, "stripe": send_stripe,
            "apple": lambda a, parts: post(a, "apple", apple_body(store, parts), {}),
            "google": lambda a, parts: post(a, "google", google_body(parts), push_signer.headers())}[source]
    template = documents[source]()
    paths = [p for p in leaf_paths(template) if isinstance(get(template, p), str)
             and p[:3] != ("push", "message", "data") and p[-1] not in ("signedTransactionInfo", "signedRenewalInfo")]
    assert len(paths) > 5
    for path in paths:
        for length in (32, 33, 64, 65, 128, 129, 255, 256):
            before = fz.state(app)
            fz.check_answer(app, send(app, put(documents[source](), path, "x" * length)), before, (200, 400, 401))


def apple_parts_of(store: AppStore, kind: str) -> dict:
    original = str(uuid.uuid4().int)[:15]
    return {"notification": store.notification(kind), "transaction": store.transaction(original, token=str(uuid.uuid4())),
            "renewal": store.renewal(original)}


def google_parts_of(play, kind: str) -> dict:
    token = f"token-fuzz-{uuid.uuid4()}"
    play.subscribe(token, user=str(uuid.uuid4()))
    notification = {"subscription": rtdn.subscription, "voided": rtdn.voided, "one_time": rtdn.one_time}[kind](token) \
        if kind != "test" else rtdn.console_test()
    return {"push": json.loads(envelope(notification)), "notification": notification}
