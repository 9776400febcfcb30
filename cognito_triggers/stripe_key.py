"""The Stripe secret key: ``STRIPE_API_KEY``, or the SSM SecureString named by
``STRIPE_API_KEY_PARAMETER``, fetched once per container.

Caching at module level means a warm container pays for SSM once
(https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_GetParameter.html);
a rotated key reaches new containers, and old ones as Lambda recycles them.
"""
from __future__ import annotations

import os

from cognito_triggers import aws

_cache: dict[str, str] = {}


def stripe_api_key() -> str | None:
    if os.environ.get("STRIPE_API_KEY"):
        return os.environ["STRIPE_API_KEY"]
    name = os.environ.get("STRIPE_API_KEY_PARAMETER")
    if not name:
        return None
    if name not in _cache:
        answer = aws.client("ssm").get_parameter(Name=name, WithDecryption=True)
        _cache[name] = answer["Parameter"]["Value"]
    return _cache[name]


def reset() -> None:
    _cache.clear()
