"""The store port's statements about deleted users' subscriptions (``domain.deletion``),
a part of ``port.Transaction``."""
from __future__ import annotations

import abc
from datetime import datetime

from gateway.domain.deletion import DeletedSubscription


class DeletedSubscriptionsPort(abc.ABC):
    @abc.abstractmethod
    def note_deleted_subscriptions(self, rows: list[DeletedSubscription]) -> None:
        """Record these; one whose (source, key) is recorded already stays as it is."""

    @abc.abstractmethod
    def deleted_subscription_keys(self, user_subs: list[str]) -> set[tuple[str, str]]:
        """The (source, key) of every subscription recorded for these users."""

    @abc.abstractmethod
    def deleted_subscriptions_of(self, user_sub: str) -> list[DeletedSubscription]:
        """Every subscription recorded for the user, in (source, key) order."""

    @abc.abstractmethod
    def claim_late_purchases(self, now: datetime, lease_until: datetime, limit: int) -> list[DeletedSubscription]:
        """Up to ``limit`` pending late purchases due at ``now`` (``next_attempt_at``), each
        leased until ``lease_until`` (its ``next_attempt_at`` as returned); skips those
        another transaction is claiming."""

    @abc.abstractmethod
    def settle_late_purchase(self, row: DeletedSubscription, outcome: str, attempts: int,
                             next_attempt_at: datetime | None, last_error: str | None) -> bool:
        """Write what stopping ``row`` came to, while it is still pending under the lease it
        was read with (``row.next_attempt_at``); whether it was."""
