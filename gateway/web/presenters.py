"""The entitlement answer of CONTRACT.md."""
from __future__ import annotations

from datetime import datetime

from gateway.domain.entitlements import Grant, view


def entitlements_answer(user_sub: str, grants: list[Grant], now: datetime) -> dict:
    views = [(grant.name, view(grant, now)) for grant in grants]
    return {
        "user_id": user_sub,
        "is_premium": any(shown["active"] for _, shown in views),  # domain.entitlements.is_premium, once judged
        "entitlements": dict(views),
    }
