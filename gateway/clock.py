"""The gateway's one clock. The domain holds none: its rules take the time as an argument,
and every use case, provider and job that needs "now" is handed this function (tests hand
them their own); and when to try again after a failure, ``backoff``."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def backoff(attempts: int, base: float = 30.0, cap: float = 6 * 3600.0) -> timedelta:
    """Exponential backoff with full jitter: 30 s, 60 s, 120 s ... capped at six hours."""
    return timedelta(seconds=random.uniform(base / 2, min(cap, base * 2 ** max(0, attempts - 1))))
