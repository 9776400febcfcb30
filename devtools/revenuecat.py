"""RevenueCat deliveries as RevenueCat sends them (sample shapes from its docs)."""
from __future__ import annotations

import json
import time
import uuid

AUTH = "Bearer rc-test-secret"
MONTH_MS = 30 * 24 * 3600 * 1000


def event(kind: str, user: str = "user-1", *, at_ms: int | None = None, transaction: str = "1000001",
          **fields) -> dict:
    at_ms = at_ms if at_ms is not None else int(time.time() * 1000)
    body = {
        "id": str(uuid.uuid4()).upper(),
        "type": kind,
        "app_id": "app1234",
        "app_user_id": user,
        "original_app_user_id": user,
        "aliases": [user, "$RCAnonymousID:8069238d6049ce87cc529853916d624c"],
        "product_id": "com.example.premium.monthly",
        "entitlement_ids": ["premium"],
        "entitlement_id": None,
        "period_type": "NORMAL",
        "purchased_at_ms": at_ms,
        "expiration_at_ms": at_ms + MONTH_MS,
        "event_timestamp_ms": at_ms,
        "environment": "PRODUCTION",
        "store": "APP_STORE",
        "transaction_id": transaction,
        "original_transaction_id": transaction,
        "is_family_share": False,
        "country_code": "US",
        "currency": "USD",
        "price": 4.99,
    }
    body.update(fields)
    return body


def transfer(from_users: list[str], to_users: list[str], *, at_ms: int | None = None) -> dict:
    at_ms = at_ms if at_ms is not None else int(time.time() * 1000)
    return {"id": str(uuid.uuid4()).upper(), "type": "TRANSFER", "app_id": "app1234",
            "event_timestamp_ms": at_ms, "store": "APP_STORE", "environment": "PRODUCTION",
            "transferred_from": from_users, "transferred_to": to_users}


def body(evt: dict) -> bytes:
    return json.dumps({"api_version": "1.0", "event": evt}).encode()
