"""The gateway's one clock. The domain holds none: its rules take the time as an argument,
and every use case, provider and job that needs "now" is handed this function (tests hand
them their own)."""
from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
