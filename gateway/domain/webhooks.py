"""Outgoing webhooks' rules: which events an endpoint wants, and when a failed attempt is
tried again or given up (parked ``failed``, for an operator to replay).

Each endpoint receives the feed in order per user: a delivery is sent only once every
earlier one of the same endpoint and user has been delivered, so a parked delivery holds
back that user's later ones (they wait; nothing is overtaken, nor dropped but by an operator,
and only a delivery whose event is gone: ``Outbox.drop``).
"""
from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
STATUSES = (PENDING, DELIVERED, FAILED)
ENV, ADMIN = "env", "admin"

#: The wait after the first failed attempt; it doubles after each, up to ``LONGEST_WAIT``.
FIRST_WAIT = timedelta(seconds=30)
LONGEST_WAIT = timedelta(hours=6)
#: A delivery is parked once it has failed for this long and at least ``MIN_ATTEMPTS`` times
#: (the attempts guard a delivery that waited days behind a parked one of its user).
GIVE_UP_AFTER = timedelta(days=3)
MIN_ATTEMPTS = 5


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A receiver: its URL, the secrets it is signed with (several while one rolls) and the
    event types it wants (``None``: every type; ``entitlement.*``: a family)."""

    name: str
    url: str
    secrets: tuple[str, ...]
    types: tuple[str, ...] | None = None
    enabled: bool = True
    origin: str = ENV

    def wants(self, event_type: str) -> bool:
        return self.types is None or any(matches(pattern, event_type) for pattern in self.types)


def matches(pattern: str, event_type: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


@dataclasses.dataclass(frozen=True)
class Delivery:
    """One feed event's delivery to one endpoint, as the admin and the CLI list it."""

    endpoint: str
    position: int
    user_sub: str
    event_type: str | None  # None: the event was pruned from the feed since
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


def retry_at(attempts: int, queued_at: datetime, now: datetime, jitter: float) -> datetime | None:
    """When to try again after ``attempts`` failed attempts of a delivery queued (fanned out
    or replayed) at ``queued_at``; ``None``: give up. ``jitter`` in [0, 1) spreads the
    retries of many deliveries that failed together over the second half of the wait."""
    if attempts >= MIN_ATTEMPTS and now - queued_at >= GIVE_UP_AFTER:
        return None
    wait = min(LONGEST_WAIT, FIRST_WAIT * 2 ** min(max(attempts - 1, 0), 20))
    return now + wait * (0.5 + jitter / 2)
