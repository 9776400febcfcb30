"""Structured logs of the gateway as deployed: one line per delivery and per API call, and
never a secret, a whole token or a signature, read from the Procfile-run gateway's stderr."""
from __future__ import annotations

import http.client
import json
import time
from urllib.parse import urlsplit

import pytest

from devtools import revenuecat as rc
from devtools import stripe_objects as so
from devtools.apple_pki import mint_chain
from devtools.apple_store import AppStore
from devtools.google_play import ACCESS_TOKEN, FakePlay
from devtools.google_pubsub import PushSigner, envelope, subscription
from devtools.stripe_signing import generate_header, new_secret
from tests.support.procfile import serve

RC_SECRET = "Bearer rc-log-secret-6f1d0c2b9e"
API_KEY = "gk_log_secret_4b7e1f9a0c3d5e7f"
METRICS_TOKEN = "metrics-log-secret-8c2e"


def call(port, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    return response.status, response.read()


@pytest.fixture(scope="module")
def sent(tmp_path_factory, cognito):
    """Run the gateway with every source configured, send good and forged deliveries and
    API calls, stop it; returns its stderr lines and the secret values it was given.

    Once for the module, on a SQLite database of its own: what is logged does not depend
    on the database."""
    tmp_path = tmp_path_factory.mktemp("logs")
    database_url = f"sqlite:///{tmp_path}/gateway.db"
    chain, stripe_secret = mint_chain(), new_secret()
    store = AppStore(chain)
    with PushSigner() as signer, FakePlay() as play:
        env = {"DATABASE_URL": database_url, "LOG_LEVEL": "INFO", "REVENUECAT_WEBHOOK_AUTH": RC_SECRET,
               "STRIPE_WEBHOOK_SECRETS": stripe_secret, "GATEWAY_API_KEYS": API_KEY,
               "METRICS_TOKEN": METRICS_TOKEN, **store.env(chain.write_root(tmp_path)), **signer.env(),
               **play.env(), **cognito.env()}
        play.subscribe("log-token", user="log-user-google")
        with serve(env, workers=1) as (url, process):
            port = urlsplit(url).port
            secrets = _send_everything(port, stripe_secret, store, signer, cognito)
        stderr = process.stderr.read().decode()
    secrets += [stripe_secret, RC_SECRET.split()[1], API_KEY, METRICS_TOKEN, ACCESS_TOKEN]
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return stderr, lines, secrets


def _send_everything(port, stripe_secret, store, signer, cognito) -> list[str]:
    """Returns the tokens and signatures that went over the wire."""
    evt = rc.event("INITIAL_PURCHASE", user="log-user-rc")
    assert call(port, "POST", "/webhooks/revenuecat", rc.body(evt), {"Authorization": RC_SECRET})[0] == 200
    assert call(port, "POST", "/webhooks/revenuecat", rc.body(evt), {"Authorization": RC_SECRET + "x"})[0] == 401
    sub = so.subscription("basil", sub_id="sub_log", customer="cus_log", cognito_sub="log-user-stripe",
                          start=int(time.time()) - 60, end=int(time.time()) + 86400)
    payload = json.dumps(so.event("customer.subscription.created", sub))
    signature = generate_header(payload, stripe_secret)
    assert call(port, "POST", "/webhooks/stripe", payload, {"Stripe-Signature": signature})[0] == 200
    forged = generate_header(payload, new_secret())
    assert call(port, "POST", "/webhooks/stripe", payload, {"Stripe-Signature": forged})[0] == 401
    apple_body = store.body(store.notification("SUBSCRIBED", "INITIAL_BUY", transaction=store.transaction(
        "2000000001", token="6f1f0a4e-0000-4000-8000-00000000a001"), renewal=store.renewal("2000000001")))
    assert call(port, "POST", "/webhooks/apple", apple_body)[0] == 200
    push = signer.headers()
    assert call(port, "POST", "/webhooks/google", envelope(subscription("log-token")), push)[0] == 200
    bad_push = signer.headers(aud="https://elsewhere.example.com")
    assert call(port, "POST", "/webhooks/google", envelope(subscription("log-token")), bad_push)[0] == 401
    user_token = cognito.token("log-user-rc")
    assert call(port, "GET", "/v1/me/entitlements", headers={"Authorization": f"Bearer {user_token}"})[0] == 200
    assert call(port, "GET", "/v1/me/entitlements", headers={"Authorization": f"Bearer {user_token}x"})[0] == 401
    assert call(port, "GET", "/v1/users/u/entitlements", headers={"Authorization": f"Bearer {API_KEY}"})[0] == 200
    assert call(port, "GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})[0] == 200
    return [user_token, signature.split("v1=")[1], forged.split("v1=")[1], push["Authorization"].split()[1],
            bad_push["Authorization"].split()[1], json.loads(apple_body)["signedPayload"]]


def test_no_secret_token_or_signature_is_logged(sent):
    stderr, _, secrets = sent
    for secret in secrets:
        assert secret not in stderr
        # Nor a recognisable piece of one: the signature part of a JWT, a long prefix.
        assert secret.split(".")[-1][:24] not in stderr


def test_each_delivery_logs_one_line_with_its_source_event_and_users(sent):
    _, lines, _ = sent
    deliveries = {line["source"]: line for line in lines if line.get("message") == "delivery"}
    assert set(deliveries) == {"revenuecat", "stripe", "apple", "google"}
    assert deliveries["revenuecat"]["users"] == ["log-user-rc"]
    assert deliveries["stripe"]["users"] == ["log-user-stripe"]
    assert deliveries["google"]["users"] == ["log-user-google"]
    for line in deliveries.values():
        assert line["event_id"] and line["type"] and line["outcome"] == "processed" and line["ms"] >= 0


def test_each_api_call_logs_its_route_template_status_and_verified_user(sent):
    _, lines, _ = sent
    requests = [line for line in lines if line.get("message") == "request" and line["path"] != "/healthz"]
    assert len(requests) == 10  # every call but the scrape
    mine = [r for r in requests if r["path"] == "/v1/me/entitlements"]
    assert [(r["status"], r.get("user")) for r in mine] == [(200, "log-user-rc"), (401, None)]
    assert mine[1]["error"] == "invalid_token"
    refused = [r for r in requests if r["path"] == "/webhooks/<source>" and r["status"] == 401]
    assert len(refused) == 3 and all(r["method"] == "POST" and r["ms"] >= 0 for r in refused)
