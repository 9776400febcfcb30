"""The demo's stand-ins for the outside world, each a local HTTP server: Google's OIDC
certificate endpoint, the Cognito pool's JWKS, the Play Developer API, the Stripe API,
and a control endpoint through which ``demo send`` changes a store's state before it
notifies, as the real store's state changes before its webhook leaves.
"""
from __future__ import annotations

import contextlib
import json
from urllib.parse import unquote

from devtools.apple_store import APP_APPLE_ID, BUNDLE_ID
from devtools.cognito import CognitoIssuer
from devtools.credentials import Credentials, google_certificate
from devtools.google_play import FakePlay
from devtools.google_pubsub import PushSigner
from devtools.servers import LocalServer
from devtools.stripe_fake import StripeFake


def push_signer(credentials: Credentials) -> PushSigner:
    """Google's push signer, holding the demo's key instead of a fresh one."""
    signer = PushSigner()
    signer.kid = credentials.google_kid
    signer.keys = {signer.kid: (credentials.google_key(), google_certificate(credentials))}
    return signer


def cognito_issuer(credentials: Credentials) -> CognitoIssuer:
    issuer = CognitoIssuer()
    issuer.kid = credentials.cognito_kid
    issuer.keys = {issuer.kid: credentials.cognito_key()}
    return issuer


class DemoFakes(contextlib.ExitStack):
    def __init__(self, credentials: Credentials) -> None:
        super().__init__()
        self.credentials = credentials
        self.google, self.cognito = push_signer(credentials), cognito_issuer(credentials)
        self.play, self.stripe = FakePlay(), StripeFake(credentials.stripe_api_key)
        self.control = LocalServer({"*": self._control})

    def __enter__(self) -> "DemoFakes":
        for server in (self.google, self.cognito, self.play, self.stripe, self.control):
            self.enter_context(server)
        return self

    def _control(self, request) -> tuple:
        body = json.loads(request.body or b"null")
        if request.method == "PUT" and request.path.startswith("/play/"):
            return 200, self.play.subscribe(unquote(request.path[len("/play/"):]), **body), {}
        if request.method == "GET" and request.path.startswith("/play/"):
            found = self.play.purchases.get(unquote(request.path[len("/play/"):]))
            return (200, found, {}) if found else (404, {"error": "unknown token"}, {})
        if request.method == "PUT" and request.path == "/stripe":
            self.stripe.put(*body)
            return 200, {"stored": len(body)}, {}
        return 404, {"error": "no such control"}, {}

    def gateway_env(self, database_url: str) -> dict[str, str]:
        """The gateway's settings: every source configured against the fakes."""
        c = self.credentials
        return {
            "DATABASE_URL": database_url, "GATEWAY_API_KEYS": c.api_key,
            "STRIPE_WEBHOOK_SECRETS": c.stripe_webhook_secret, "STRIPE_API_KEY": c.stripe_api_key,
            "STRIPE_API_BASE": self.stripe.url, "REVENUECAT_WEBHOOK_AUTH": c.revenuecat_auth,
            "APPLE_ROOT_CERTS": c.apple_root_path, "APPLE_BUNDLE_ID": BUNDLE_ID,
            "APPLE_APP_APPLE_ID": str(APP_APPLE_ID), **self.google.env(), **self.play.env(),
            **self.cognito.env(),
        }


class InProcessSender:
    """``devtools.scenarios``' sender (as ``cli.Sender`` is over HTTP) for a gateway app in
    this process: the stores' state is put in ``fakes``, deliveries go through ``client``
    (the app's test client), and each must be answered 200 with the ``wanted`` status."""

    def __init__(self, fakes: DemoFakes, client) -> None:
        self.fakes, self.client, self.credentials = fakes, client, fakes.credentials

    def stripe_state(self, *objects: dict) -> None:
        self.fakes.stripe.put(*objects)

    def play_state(self, token: str, **purchase) -> None:
        self.fakes.play.subscribe(token, **purchase)

    def push_headers(self) -> dict[str, str]:
        return self.fakes.google.headers()

    def post(self, source: str, body: bytes, headers: dict[str, str], wanted: str = "processed") -> None:
        answer = self.client.post(f"/webhooks/{source}", data=body, headers=headers)
        if answer.status_code != 200 or answer.get_json().get("status") != wanted:
            raise AssertionError(f"{source}: {answer.status_code} {answer.get_data(as_text=True)}")
