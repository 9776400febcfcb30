"""Fixtures for reconciliation tests: the gateway with all four sources configured against
local fakes of every store API (Stripe, App Store Server API, Play Developer API, RevenueCat)."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from devtools import revenuecat as rc
from devtools.apple_pki import mint_chain
from devtools.apple_store import BUNDLE_ID, AppStore
from devtools.stripe_signing import new_secret, signed
from tests.e2e.conftest import API_KEY
from tests.fakes.apple_api import FakeAppStoreServerApi
from tests.fakes.revenuecat_api import FakeRevenueCat
from tests.support.events import find_event
from tests.support.google_gateway import _play_server, play, push_signer  # noqa: F401 (fixtures)
from tests.support.stripe_gateway import fake, stripe_server  # noqa: F401 (fixtures)

ISSUER, KEY_ID = "57246542-96fe-1a63-e053-0824d011072a", "2X9R4HXF34"
STRIPE_SECRET = new_secret()


def soon(hours: float = 6) -> datetime:
    return (datetime.now(timezone.utc) + timedelta(hours=hours)).replace(microsecond=0)


@pytest.fixture(scope="module")
def apple_key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def chain():
    return mint_chain()


@pytest.fixture(scope="module")
def _apple_api(apple_key):
    with FakeAppStoreServerApi(apple_key.public_key(), issuer_id=ISSUER, key_id=KEY_ID,
                               bundle_id=BUNDLE_ID) as running:
        yield running


@pytest.fixture
def apple_api(_apple_api):
    _apple_api.statuses.clear(), _apple_api.history.clear()
    return _apple_api


@pytest.fixture
def stripe_fake(fake):
    """The session's Stripe fake, reset for the test (tests.support.stripe_gateway)."""
    return fake


@pytest.fixture(scope="module")
def _revenuecat():
    with FakeRevenueCat() as fake:
        yield fake


@pytest.fixture
def revenuecat(_revenuecat):
    _revenuecat.subscribers.clear()
    _revenuecat.down, _revenuecat.throttle, _revenuecat.retry_after = False, 0, "0"
    _revenuecat.down_after = None
    _revenuecat._held = None
    return _revenuecat


class World:
    def __init__(self, app, chain) -> None:
        self.app, self.client, self.apple = app, app.test_client(), AppStore(chain)

    def reconcile(self, *args: str):
        result = self.app.test_cli_runner().invoke(args=["reconcile", *args])
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.output

    def premium(self, user: str) -> dict | None:
        answer = self.client.get(f"/v1/users/{user}/entitlements", headers={"Authorization": f"Bearer {API_KEY}"})
        assert answer.status_code == 200
        return answer.get_json()["entitlements"].get("premium")

    def revenuecat(self, event: dict):
        return self.client.post("/webhooks/revenuecat", data=rc.body(event), headers={"Authorization": rc.AUTH})

    def stripe(self, event: dict):
        body, headers = signed(event, STRIPE_SECRET)
        return self.client.post("/webhooks/stripe", data=body, headers=headers)

    def apple_post(self, body: bytes):
        return self.client.post("/webhooks/apple", data=body, content_type="application/json")

    def event(self, source: str, event_id: str):
        with self.app.extensions["gateway"].store.transaction() as tx:
            return find_event(tx, source, event_id)


@pytest.fixture
def world(make_app, chain, tmp_path, apple_key, apple_api, stripe_fake, play, push_signer, revenuecat):
    pem = apple_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()).decode()
    apple = AppStore(chain).env(chain.write_root(tmp_path))
    app = make_app(GATEWAY_API_KEYS=API_KEY, REVENUECAT_WEBHOOK_AUTH=rc.AUTH, **revenuecat.env(), **apple,
                   APPLE_ISSUER_ID=ISSUER, APPLE_KEY_ID=KEY_ID, APPLE_PRIVATE_KEY=pem, APPLE_API_BASE=apple_api.url,
                   STRIPE_WEBHOOK_SECRETS=STRIPE_SECRET, STRIPE_API_KEY=stripe_fake.api_key,
                   STRIPE_API_BASE=stripe_fake.url, **push_signer.env(), **play.env())
    return World(app, chain)


def new_user() -> str:
    return str(uuid.uuid4())


__all__ = ["apple_key", "chain", "_apple_api", "apple_api", "stripe_server", "fake", "stripe_fake", "_revenuecat", "revenuecat",
           "_play_server", "play", "push_signer", "world", "World", "new_user", "soon"]
