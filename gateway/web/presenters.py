"""The entitlement answer of CONTRACT.md."""
from __future__ import annotations

from datetime import datetime

from gateway.domain.entitlements import Grant, is_premium, view


def entitlements_answer(user_sub: str, grants: list[Grant], now: datetime) -> dict:
    return {
        "user_id": user_sub,
        "is_premium": is_premium(grants, now),
        "entitlements": {grant.name: view(grant, now) for grant in grants},
    }
