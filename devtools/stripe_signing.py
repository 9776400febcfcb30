"""Real ``Stripe-Signature`` headers, minted in the test with a secret made at test time.

Same construction as Stripe (https://docs.stripe.com/webhooks#verify-manually) and as
stripe-python's own ``generate_header`` test helper: ``t=<unix time>,v1=<hex HMAC-SHA256
of f"{t}.{payload}" keyed with the whole whsec_ secret>``.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def generate_header(payload: str, secret: str, **overrides) -> str:
    """Override ``timestamp``, ``scheme`` or ``signature`` to forge a bad header."""
    timestamp = overrides.get("timestamp", int(time.time()))
    signed = f"{timestamp}.{payload}".encode()
    signature = overrides.get("signature") or hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},{overrides.get('scheme', 'v1')}={signature}"


def signed(event: dict | str, secret: str, **overrides) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a delivery of ``event``, as Stripe would send it."""
    payload = event if isinstance(event, str) else json.dumps(event, indent=2)
    headers = {"Stripe-Signature": generate_header(payload, secret, **overrides),
               "Content-Type": "application/json; charset=utf-8"}
    return payload.encode(), headers
