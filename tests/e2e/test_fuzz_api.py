"""Fuzzing every public endpoint but the webhooks (``test_fuzz_webhooks.py``) through the WSGI
app: the entitlement reads, the history, the feed, the client actions (Checkout, portal, purchase
registration), ``/healthz`` and ``/metrics``; tokens, headers, paths, queries and bodies.

Tokens are garbage in a JWT's shape, JWTs whose header or claims are nested past json's
recursion limit, and Cognito tokens really signed by the test's issuer with hostile claims.
Bodies are arbitrary bytes, deep JSON, JSON Python reads but JSON forbids, and valid bodies
with one field hostile. The gateway never answers 500 and a refusal stores nothing.
"""
from __future__ import annotations

import json
import uuid
from urllib.parse import quote, urlencode

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from devtools.apple_pki import mint_chain
from devtools.apple_store import AppStore
from tests.e2e import fuzzing as fz
from tests.e2e.conftest import API_KEY
from tests.support.google_gateway import _play_server, play, push_signer  # noqa: F401 (fixtures)
from tests.support.stripe_gateway import fake, stripe_server  # noqa: F401 (fixtures)

USER = "0c5b2d6e-7f1a-4e8b-9c3d-2a1b0f9e8d7c"
CATALOG = {"entitlements": {"premium": {"stripe": ["price_monthly"]}}, "default": "premium"}
HEADER_NAMES = ["Authorization", "Content-Type", "Content-Length", "Accept", "X-Forwarded-For", "Cookie", "X-Other"]
headers_drawn = st.dictionaries(st.sampled_from(HEADER_NAMES), fz.printable, max_size=4)


@pytest.fixture(scope="module")
def chain():
    return mint_chain()


@pytest.fixture
def app(make_app, cognito, chain, tmp_path, fake, push_signer, play):
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(CATALOG))
    return make_app(**cognito.env(), GATEWAY_API_KEYS=API_KEY, STRIPE_API_KEY=fake.api_key, STRIPE_API_BASE=fake.url,
                    CATALOG_PATH=str(catalog), **AppStore(chain).env(chain.write_root(tmp_path)),
                    **push_signer.env(), **play.env(), METRICS_TOKEN="fuzz-metrics")


def cognito_token(cognito, data, user: str = USER, valid: int = 1) -> tuple[str, bool]:
    """A token for ``user``: valid (``valid`` times as likely as each other kind), garbage,
    deep, or signed by the issuer with a hostile claim, a hostile header or a long sub; and
    whether it may pass: a hostile value is never the pool's issuer, a token use, the app
    client or a key id, so only a claim or header the gateway need not check may be
    hostile in a token it accepts."""
    kinds = ["valid"] * valid + ["garbage", "deep", "claims", "header", "sub"]
    kind = data.draw(st.sampled_from(kinds), label="token kind")
    key = cognito.keys[cognito.kid]
    if kind == "valid":
        return cognito.token(user, use=data.draw(st.sampled_from(["id", "access"]), label="use")), True
    if kind == "garbage":
        return data.draw(fz.token_garbage, label="token"), False
    if kind == "sub":  # what Cognito never issues, and no user_sub column holds
        sub = data.draw(fz.column_edges | st.just(""), label="sub")
        return cognito.token(sub), 0 < len(sub) <= 255
    claims = jwt.decode(cognito.token(user), options={"verify_signature": False})
    if kind == "deep":
        depth = data.draw(fz.depths, label="depth")
        payload = json.dumps(claims).encode()[:-1] + b', "deep": ' + fz.nested(depth) + b"}"
        return fz.raw_jwt({"kid": cognito.kid}, payload, key, "RS256"), True  # signed by the pool: deep, but good
    if kind == "claims":
        name = data.draw(st.sampled_from(["sub", "iss", "exp", "iat", "token_use", "aud", "client_id", "nbf"]))
        claims[name] = data.draw(fz.hostile, label="claim")
        return fz.raw_jwt({"kid": cognito.kid}, claims, key, "RS256"), name not in ("iss", "token_use", "aud")
    name = data.draw(st.sampled_from(["kid", "alg", "typ", "crit", "jku"]))
    header = {"kid": cognito.kid, name: data.draw(fz.hostile)}
    return fz.raw_jwt(header, claims, key, "RS256"), name not in ("kid", "alg")


def authorization(cognito, data, user: str = USER, valid: int = 1) -> tuple[dict[str, str], bool]:
    """Headers with a Cognito token of any kind (``cognito_token``), and whether it may pass."""
    schemes = ["Bearer "] * valid + ["bearer ", "Basic ", ""]
    scheme = data.draw(st.sampled_from(schemes), label="scheme")
    token, may_pass = cognito_token(cognito, data, user, valid)
    headers = {**data.draw(headers_drawn, label="headers"), "Authorization": scheme + token}
    return headers, may_pass and scheme.lower() == "bearer "


def answered(app, answer, before: dict, allowed: tuple[int, ...], may_pass: bool) -> None:
    """``fz.check_answer``, and 401 whenever the token cannot be good: authentication first."""
    fz.check_answer(app, answer, before, allowed if may_pass else (401,))


def body_for(data, valid: dict) -> bytes:
    """A body: arbitrary bytes, raw hostile JSON, or ``valid`` with one field hostile or dropped."""
    kind = data.draw(st.sampled_from(["valid", "bytes", "raw", "field", "field", "splice", "unusable"]), label="body kind")
    if kind == "valid":
        return json.dumps(valid).encode()
    if kind == "bytes":
        return data.draw(st.binary(max_size=512), label="bytes")
    if kind == "raw":
        return data.draw(fz.raw_hostile, label="raw")
    name = data.draw(st.sampled_from(sorted(valid)), label="field")
    if kind == "splice":
        return fz.splice(dict(valid), (name,), data.draw(fz.raw_hostile, label="raw"))
    if kind == "unusable":  # json.dumps writes them as the escapes \u0000 and \ud800
        return json.dumps({**valid, name: data.draw(st.sampled_from(["\x00", "\ud800", "a\udfffb"]))}).encode()
    document = dict(valid)
    if data.draw(st.booleans(), label="drop"):
        document.pop(name)
    else:
        document[name] = data.draw(fz.hostile, label="value")
    return json.dumps(document).encode()


def request(app, method: str, path: str, **kwargs):
    return app.test_client().open(path, method=method, **kwargs)


@fz.FUZZ
@given(data=st.data())
def test_my_entitlements_with_any_token_is_200_or_401(app, cognito, data):
    before = fz.state(app)
    given_headers, may_pass = authorization(cognito, data)
    answer = request(app, "GET", "/v1/me/entitlements", headers=given_headers)
    answered(app, answer, before, (200, 401), may_pass)
    if answer.status_code == 200:  # a signed sub of any shape is refused unless a user id
        user_id = answer.get_json()["user_id"]
        assert isinstance(user_id, str) and 0 < len(user_id) <= 255


path_segment = st.one_of(st.text(max_size=300), st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
                         st.integers(min_value=0, max_value=20000).map(lambda n: "u" * n),
                         st.sampled_from(["%00", "%ff%fe", "%ed%a0%80", "..", "%2F", "a/b", "\u0000", "\ud800"]))


paging_values = (st.sampled_from(["\u00b2", "\u0661\u0662", "9" * 30, "0" * 5000, " 1", "1e3", "", "0", "1", "500",
                                  "501", "0500", "0" * 25 + "7", "-1", "abc", "xyz", "0x10", "1.5", str(10**9),
                                  str(2**63 - 1), str(2**63)])
                 | st.integers(-2, 1002).map(str) | fz.time_edges.map(str) | st.integers().map(str) | st.text(max_size=30))


@fz.FUZZ
@given(sub=path_segment, key=st.sampled_from([API_KEY] * 4 + ["", "wrong"]) | fz.printable, extra=headers_drawn,
       which=st.sampled_from(["entitlements", "history"]),
       query=st.dictionaries(st.sampled_from(["limit", "before", "limit", "before", "after", "x"]),
                             paging_values, max_size=3))
def test_user_reads_with_any_path_query_and_key_never_500(app, sub, key, extra, which, query):
    before = fz.state(app)
    # As a client puts them on the wire: percent-encoded UTF-8 bytes (a lone surrogate too).
    path = "/v1/users/" + quote(sub.encode("utf-8", "surrogatepass"), safe="/%") + "/" + which
    query_string = urlencode({k: v.encode("utf-8", "surrogatepass") for k, v in query.items()})
    answer = request(app, "GET", path, query_string=query_string, headers={**extra, "Authorization": f"Bearer {key}"})
    fz.check_answer(app, answer, before, (200, 308, 400, 401, 404))  # 308: Werkzeug merges "//"


@fz.FUZZ
@given(query=st.dictionaries(st.sampled_from(["limit", "before"]), paging_values, min_size=1))
def test_history_paging_arguments_are_400_exactly_when_not_a_number_in_bounds(app, query):
    """README: ``limit`` up to 500, ``before`` a row number (a positive BIGINT); anything else
    is ``bad_query`` (``bad_request`` for a NUL, refused in any URL first), and a number in
    bounds is served."""
    query_string = urlencode({k: v.encode("utf-8", "surrogatepass") for k, v in query.items()})
    answer = request(app, "GET", f"/v1/users/{USER}/history", query_string=query_string, headers=fz.bearer(API_KEY))
    bounds = {"limit": 500, "before": 2**63 - 1}
    bad = [name for name, value in query.items() if not _whole(value, bounds[name])]
    refused = "bad_request" if any("\x00" in value for value in query.values()) else "bad_query"
    assert (answer.status_code, answer.get_json().get("error")) == ((400, refused) if bad else (200, None)), \
        (query, answer.get_data(as_text=True)[:300])


def _whole(value: str, most: int, least: int = 1) -> bool:
    """The README's rule, written out: a whole number in ASCII digits, ``least``..``most``
    (leading zeros allowed; past 20 significant digits it is out of any bound here)."""
    digits = value.lstrip("0")
    return value.isascii() and value.isdigit() and len(digits) <= 20 and least <= int(digits or "0") <= most


FEED_BOUNDS = {"after": (0, 2**63 - 1), "limit": (1, 1000), "wait": (0, 25)}


@fz.FUZZ
@given(query=st.dictionaries(st.sampled_from(["after", "limit", "wait"]), paging_values, min_size=1))
def test_feed_paging_arguments_are_400_exactly_when_not_a_number_in_bounds(app, query):
    """README (The pull feed): ``after`` a cursor, 0 up to a positive BIGINT; ``limit``
    1..1000; ``wait`` 0..25 seconds. Anything else (``limit=abc``, ``-1``, ``10**9``,
    ``after=xyz``) is ``400 bad_query`` (``bad_request`` for a NUL), never a 500, and stores
    nothing; a number in bounds is served. A ``wait`` in bounds would hold this request on
    the empty feed for that long, so it is asked as 0 (still in bounds)."""
    if _whole(query.get("wait", ""), 25, least=0):
        query["wait"] = "0"
    query_string = urlencode({k: v.encode("utf-8", "surrogatepass") for k, v in query.items()})
    before = fz.state(app)
    answer = request(app, "GET", "/v1/events", query_string=query_string, headers=fz.bearer(API_KEY))
    fz.check_answer(app, answer, before, (200, 400))
    bad = [name for name, value in query.items() if not _whole(value, FEED_BOUNDS[name][1], FEED_BOUNDS[name][0])]
    refused = "bad_request" if any("\x00" in value for value in query.values()) else "bad_query"
    assert (answer.status_code, answer.get_json().get("error")) == ((400, refused) if bad else (200, None)), \
        (query, answer.get_data(as_text=True)[:300])
    if not bad:
        assert answer.get_json()["events"] == [] and answer.get_json()["has_more"] is False


@fz.FUZZ
@given(data=st.data(), portal=st.booleans())
def test_checkout_and_portal_sessions_with_any_body_and_token_never_500(app, cognito, data, portal):
    valid = ({"return_url": "https://app.example.com/account"} if portal else
             {"price_id": "price_monthly", "success_url": "https://app.example.com/ok",
              "cancel_url": "http://localhost:3000/pricing"})
    before = fz.state(app)
    given_headers, may_pass = authorization(cognito, data, valid=6)
    answer = request(app, "POST", "/v1/billing-portal/sessions" if portal else "/v1/checkout/sessions",
                     data=body_for(data, valid), headers=given_headers)
    # 503: the customer just made is not yet found by Stripe's search (README, Connecting Stripe).
    answered(app, answer, before, (200, 400, 401, 503), may_pass)
    if answer.status_code == 503:
        assert answer.get_json()["error"] != "store_unavailable"


@fz.FUZZ
@given(data=st.data())
def test_apple_purchase_registration_with_any_body_token_or_transaction_never_500(app, cognito, chain, data):
    store = AppStore(chain)
    original = str(uuid.uuid4().int)[:15]
    transaction = store.transaction(original)
    kind = data.draw(st.sampled_from(["valid", "field", "deep", "garbage"]), label="transaction kind")
    if kind == "field":
        transaction[data.draw(st.sampled_from(sorted(transaction)), label="field")] = data.draw(fz.hostile)
    header = json.dumps({"alg": "ES256", "x5c": chain.x5c}).encode()
    payload = json.dumps(transaction).encode()
    if kind == "deep":
        payload = payload[:-1] + b', "deep": ' + fz.nested(data.draw(fz.depths, label="depth")) + b"}"
    signed = data.draw(fz.token_garbage) if kind == "garbage" else fz.raw_jws(header, payload, chain.leaf.key, "ES256")
    before = fz.state(app)
    given_headers, may_pass = authorization(cognito, data, valid=6)
    answer = request(app, "POST", "/v1/purchases/apple", data=body_for(data, {"signedTransaction": signed}),
                     headers=given_headers)
    answered(app, answer, before, (200, 400, 401, 409), may_pass)


@fz.FUZZ
@given(data=st.data())
def test_google_purchase_registration_with_any_body_or_token_never_500(app, cognito, play, data):
    token = f"tok-{uuid.uuid4()}"
    if data.draw(st.booleans(), label="known to Play"):
        play.subscribe(token, user=data.draw(st.sampled_from([None, USER, str(uuid.uuid4())]), label="owner"))
    before = fz.state(app)
    given_headers, may_pass = authorization(cognito, data, valid=6)
    answer = request(app, "POST", "/v1/purchases/google",
                     data=body_for(data, {"purchaseToken": token, "productId": "premium_monthly"}),
                     headers=given_headers)
    answered(app, answer, before, (200, 400, 401, 404, 409), may_pass)


@fz.FUZZ
@given(path=st.sampled_from(["/healthz", "/readyz", "/metrics", "/openapi.json"]), extra=headers_drawn,
       method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"]),
       body=st.binary(max_size=256))
def test_health_metrics_and_openapi_with_any_method_and_headers_never_500(app, path, extra, method, body):
    before = fz.state(app)
    answer = request(app, method, path, headers=extra, data=body)
    fz.check_answer(app, answer, before, (200, 401, 405))
