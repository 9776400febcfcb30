"""The triggers' configuration, read from the environment when a handler runs, never at import."""
from __future__ import annotations

import os

DEFAULT_ATTRIBUTE = "custom:stripe_customer_id"


def stripe_attribute() -> str:
    """The user attribute holding the customer id, always in its ``custom:`` form.

    Cognito names custom attributes ``custom:<name>`` in every user API, while the pool's
    schema (and so an operator's config) often names them without the prefix.
    """
    name = os.environ.get("COGNITO_STRIPE_ATTRIBUTE", "").strip() or DEFAULT_ATTRIBUTE
    return name if name.startswith("custom:") else f"custom:{name}"


def stripe_api_base() -> str | None:
    return os.environ.get("STRIPE_API_BASE") or None


def stripe_timeout() -> float:
    """Upper bound of one Stripe call; the invocation's deadline may shrink it further."""
    return float(os.environ.get("STRIPE_TIMEOUT_SECONDS") or 1.5)


def budget_seconds() -> float:
    """What one invocation may spend. Cognito waits 5 s, cold start included, which the
    Lambda context's remaining time does not see; hence the margin."""
    return float(os.environ.get("TRIGGER_BUDGET_SECONDS") or 4.0)


def gateway_url() -> str | None:
    return (os.environ.get("GATEWAY_URL") or "").rstrip("/") or None


def gateway_api_key() -> str | None:
    return os.environ.get("GATEWAY_API_KEY") or None


def gateway_timeout() -> float:
    return float(os.environ.get("GATEWAY_TIMEOUT_SECONDS") or 1.5)
