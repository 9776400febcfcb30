"""Google-shaped Pub/Sub pushes for the demo and the tests: OIDC push tokens and their
certificates.

Pub/Sub signs a push's ``Authorization: Bearer`` token with RS256 under one of Google's
keys, published as x509 PEM certificates keyed by ``kid`` at
https://www.googleapis.com/oauth2/v1/certs. ``PushSigner`` mints an RSA key and a
self-signed certificate at test time and serves the same JSON (with Cache-Control
max-age) from a local server; ``GOOGLE_OIDC_CERTS_URL`` points the gateway at it.
"""
from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
import time
import uuid

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from devtools.servers import LocalServer

PACKAGE = "com.example.app"
AUDIENCE = "https://gateway.example.com/webhooks/google"
SERVICE_ACCOUNT = "rtdn-push@example-project.iam.gserviceaccount.com"
_message_ids = itertools.count(136969346945)


def mint_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def self_signed_pem(key: rsa.RSAPrivateKey, common_name: str = "test.googleapis.com") -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class PushSigner:
    """Signs push tokens as Google does; serves its certificates like Google's endpoint."""

    def __init__(self, max_age: int = 3600) -> None:
        self.keys: dict[str, tuple[rsa.RSAPrivateKey, str]] = {}
        self.max_age, self.available, self.fetches = max_age, True, 0
        self.rotate()
        self.server = LocalServer({"GET /oauth2/v1/certs": self._certs})

    def rotate(self) -> str:
        key = mint_key()
        self.kid = uuid.uuid4().hex
        self.keys[self.kid] = (key, self_signed_pem(key))
        return self.kid

    def _certs(self, request):
        if not self.available:
            return 503, {"error": "unavailable"}, {}
        self.fetches += 1
        cache = f"public, max-age={self.max_age}, must-revalidate, no-transform"
        return 200, {kid: pem for kid, (_, pem) in self.keys.items()}, {"Cache-Control": cache}

    @property
    def certs_url(self) -> str:
        return f"{self.server.url}/oauth2/v1/certs"

    def env(self) -> dict[str, str]:
        return {"GOOGLE_PACKAGE_NAME": PACKAGE, "GOOGLE_PUBSUB_AUDIENCE": AUDIENCE,
                "GOOGLE_PUBSUB_SERVICE_ACCOUNT": SERVICE_ACCOUNT, "GOOGLE_OIDC_CERTS_URL": self.certs_url}

    def token(self, *, kid: str | None = None, key: rsa.RSAPrivateKey | None = None, **overrides) -> str:
        """A push token; an override of ``None`` drops the claim."""
        now = int(time.time())
        claims = {"aud": AUDIENCE, "azp": "113774264463038321964", "email": SERVICE_ACCOUNT,
                  "email_verified": True, "exp": now + 3600, "iat": now, "iss": "https://accounts.google.com",
                  "sub": "113774264463038321964"}
        claims.update(overrides)
        claims = {name: value for name, value in claims.items() if value is not None}
        kid = kid or self.kid
        signing_key = key or self.keys[kid][0]
        return jwt.encode(claims, signing_key, algorithm="RS256", headers={"kid": kid})

    def headers(self, **overrides) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(**overrides)}", "Content-Type": "application/json"}

    def __enter__(self) -> "PushSigner":
        self.server.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.server.__exit__(*exc)


def envelope(notification: dict, message_id: str | None = None) -> bytes:
    """A push body as Pub/Sub sends it (camelCase and the snake_case duplicates)."""
    message_id = message_id or str(next(_message_ids))
    published = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    data = base64.b64encode(json.dumps(notification).encode()).decode()
    message = {"attributes": {}, "data": data, "messageId": message_id, "message_id": message_id,
               "publishTime": published, "publish_time": published}
    return json.dumps({"message": message, "subscription": "projects/example-project/subscriptions/rtdn-push"}).encode()


def notification(package: str = PACKAGE, at_ms: int | None = None, **member) -> dict:
    """A DeveloperNotification; ``eventTimeMillis`` is a string on the wire."""
    at_ms = at_ms if at_ms is not None else int(time.time() * 1000)
    return {"version": "1.0", "packageName": package, "eventTimeMillis": str(at_ms), **member}


def subscription(token: str, kind: int = 4, **kwargs) -> dict:
    return notification(subscriptionNotification={"version": "1.0", "notificationType": kind,
                                                  "purchaseToken": token}, **kwargs)


def voided(token: str, product_type: int = 1, refund_type: int = 1, **kwargs) -> dict:
    return notification(voidedPurchaseNotification={"purchaseToken": token, "orderId": "GPA.3333-4137-0319-36762",
                                                    "productType": product_type, "refundType": refund_type}, **kwargs)


def one_time(token: str, kind: int = 1, **kwargs) -> dict:
    return notification(oneTimeProductNotification={"version": "1.0", "notificationType": kind,
                                                    "purchaseToken": token, "sku": "coins_100"}, **kwargs)


def console_test(**kwargs) -> dict:
    """The notification the Play Console sends from "Send test notification"."""
    return notification(testNotification={"version": "1.0"}, **kwargs)
