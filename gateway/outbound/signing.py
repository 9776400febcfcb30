"""Outgoing webhooks signed as the Standard Webhooks specification has them.

https://www.standardwebhooks.com/ (spec v1.0.0), with its reference library
``standardwebhooks``: headers ``webhook-id`` (the event id, the same on every retry, for the
receiver to dedupe on), ``webhook-timestamp`` (UNIX seconds of this attempt) and
``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` for each of the
endpoint's secrets, space-separated, so a receiver keeps verifying while a secret rolls.
Secrets are ``whsec_`` and the base64 of at least 24 random bytes.
"""
from __future__ import annotations

import base64
import binascii
from datetime import datetime

from standardwebhooks.webhooks import Webhook

PREFIX = "whsec_"
MIN_SECRET_BYTES = 24


def check_secret(secret: str) -> None:
    """Raise ``ValueError`` unless ``secret`` is ``whsec_`` and base64 of enough bytes."""
    if not secret.startswith(PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    try:
        raw = base64.b64decode(secret[len(PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ and base64") from None
    if len(raw) < MIN_SECRET_BYTES:
        raise ValueError(f"a webhook secret holds at least {MIN_SECRET_BYTES} bytes")


def headers(message_id: str, body: str, secrets: tuple[str, ...], at: datetime) -> dict[str, str]:
    signatures = " ".join(Webhook(secret).sign(message_id, at, body) for secret in secrets)
    return {"webhook-id": message_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": signatures, "content-type": "application/json"}
