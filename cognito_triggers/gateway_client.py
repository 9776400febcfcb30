"""The gateway's server API, as the pre token trigger asks it: one GET, stdlib only.

``GET {GATEWAY_URL}/v1/users/<sub>/entitlements`` with ``Authorization: Bearer <key>``
answers ``{"user_id", "is_premium", "entitlements": {name: {...}}}`` (CONTRACT.md,
"Entitlement API"). urllib keeps the handler's import cheap; requests would add ~80 ms.
"""
from __future__ import annotations

import json
import urllib.request
from urllib.parse import quote


def fetch_entitlements(base_url: str, api_key: str, sub: str, timeout: float) -> dict:
    """The user's entitlements; raises on any failure (HTTP error, timeout, bad JSON)."""
    request = urllib.request.Request(
        f"{base_url}/v1/users/{quote(sub, safe='')}/entitlements",
        headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
    )
    # timeout bounds the connect and each read on the socket.
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        body = json.loads(answer.read())
    if not isinstance(body, dict):
        raise ValueError("entitlements answer is not a JSON object")
    return body
