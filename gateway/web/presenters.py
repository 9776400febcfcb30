"""The entitlement answer of CONTRACT.md."""
from __future__ import annotations

from datetime import datetime

from gateway.domain.entitlements import Grant, view


def entitlements_answer(user_sub: str, grants: list[Grant], now: datetime) -> dict:
    # One loop: every app launch builds this, and a comprehension and a generator are a
    # function call each.
    entitlements, premium = {}, False
    for grant in grants:
        shown = entitlements[grant.name] = view(grant, now)
        premium = premium or shown["active"]  # domain.entitlements.is_premium, once judged
    return {"user_id": user_sub, "is_premium": premium, "entitlements": entitlements}
