"""The entitlement answer of CONTRACT.md."""
from __future__ import annotations

from datetime import datetime, timezone

from gateway.domain.entitlements import Grant, is_premium


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    value = value.astimezone(timezone.utc)
    spec = "milliseconds" if value.microsecond else "seconds"
    return value.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def entitlements_answer(user_sub: str, grants: list[Grant], now: datetime) -> dict:
    return {
        "user_id": user_sub,
        "is_premium": is_premium(grants, now),
        "entitlements": {
            grant.name: {
                "active": grant.is_active(now),
                "status": grant.status_at(now).value,
                "expires_at": iso(grant.expires_at),
                "will_renew": grant.will_renew,
                "source": grant.source,
                "product_id": grant.product_id,
            }
            for grant in grants
        },
    }
