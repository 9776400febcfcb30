"""The gateway with its google source wired to local fakes, driven through its HTTP API.

Fixtures (import them into a test module): ``push_signer`` (session: the OIDC signer and
its certificate endpoint), ``play`` (the Play Developer API fake,
reset for each test) and ``google`` (the app
on the test's database, configured for both, with the Cognito issuer and an API key).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from devtools.google_play import FakePlay
from devtools.google_pubsub import PushSigner, envelope
from tests.support.events import find_event

API_KEY = "test-server-key"


class GoogleGateway:
    def __init__(self, app, signer: PushSigner, play: FakePlay, cognito) -> None:
        self.app, self.signer, self.play, self.cognito = app, signer, play, cognito
        self.client = app.test_client()
        self.services = app.extensions["gateway"]

    def push(self, notification: dict, message_id: str | None = None, headers: dict | None = None, **claims):
        """POST a Pub/Sub push of ``notification`` with a push token (``claims`` override it)."""
        return self.client.post("/webhooks/google", data=envelope(notification, message_id),
                                headers=headers if headers is not None else self.signer.headers(**claims))

    def entitlements(self, user_sub: str) -> dict:
        answer = self.client.get(f"/v1/users/{user_sub}/entitlements", headers={"Authorization": f"Bearer {API_KEY}"})
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()

    def premium(self, user_sub: str) -> dict | None:
        return self.entitlements(user_sub)["entitlements"].get("premium")

    def register(self, user_sub: str | None, token: str, product: str = "premium_monthly", **body):
        headers = self.cognito.header(user_sub) if user_sub else {}
        return self.client.post("/v1/purchases/google", json={"purchaseToken": token, "productId": product, **body},
                                headers=headers)

    def event(self, message_id: str):
        with self.services.store.transaction() as tx:
            return find_event(tx, "google", message_id)

    def retry(self) -> str:
        """Let the backoff of every deferred event pass, then run ``flask events retry``."""
        far, past = datetime.now(timezone.utc) + timedelta(days=1), datetime.now(timezone.utc) - timedelta(seconds=1)
        with self.services.store.transaction() as tx:  # claiming with a lease in the past makes them due now
            tx.claim_due_events(now=far, stale_before=past, lease_until=past, limit=1000)
        result = self.app.test_cli_runner().invoke(args=["events", "retry"])
        assert result.exit_code == 0, result.output
        return result.output.strip()


@pytest.fixture(scope="session")
def push_signer():
    with PushSigner() as signer:
        yield signer


@pytest.fixture(scope="session")
def _play_server():
    with FakePlay() as fake:
        yield fake


@pytest.fixture
def play(_play_server):
    _play_server.reset()
    return _play_server


@pytest.fixture
def google(make_app, push_signer, play, cognito):
    push_signer.available = True
    app = make_app(**push_signer.env(), **play.env(), **cognito.env(), GATEWAY_API_KEYS=API_KEY)
    return GoogleGateway(app, push_signer, play, cognito)
