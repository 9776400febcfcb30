"""The store port's statements about deleted users: the tombstone, the erasure of their
personal data, and their subscriptions (``domain.deletion``); a part of ``port.Transaction``."""
from __future__ import annotations

import abc
from datetime import datetime
from typing import Any

from gateway.domain.deletion import DeletedSubscription
from gateway.domain.events import Event


class DeletionsPort(abc.ABC):
    @abc.abstractmethod
    def mark_deleted(self, user_sub: str, report: dict[str, Any], now: datetime) -> dict[str, Any] | None:
        """Record the user as deleted with ``report``; returns the report recorded by an
        earlier deletion instead, if any (nothing is written then)."""

    @abc.abstractmethod
    def deletion_report(self, user_sub: str) -> dict[str, Any] | None:
        """The report ``mark_deleted`` recorded for the user, or ``None``: not deleted."""

    @abc.abstractmethod
    def deleted_at(self, user_sub: str) -> datetime | None:
        """When ``mark_deleted`` recorded the user, or ``None``: not deleted."""

    @abc.abstractmethod
    def identities_of(self, user_sub: str) -> list[tuple[str, str]]:
        """The (source, account) pairs linked to the user, in order."""

    @abc.abstractmethod
    def unlink_user(self, user_sub: str) -> None:
        """Delete every identity link to the user (the transfer register stays)."""

    @abc.abstractmethod
    def keep_accounts(self, user_sub: str, accounts: list[tuple[str, str]]) -> None:
        """Keep these (source, account) pairs as the deleted user's, beside the tombstone;
        one already kept for another deleted user stays theirs."""

    @abc.abstractmethod
    def deleted_among(self, user_subs: list[str]) -> set[str]:
        """Which of these users were deleted (``mark_deleted``)."""

    @abc.abstractmethod
    def deleted_accounts(self, accounts: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The deleted user whose tombstone keeps each of these (source, account) pairs
        (``keep_accounts``) that no identity links to anyone since; the others are left out."""

    @abc.abstractmethod
    def events_naming(self, text: str, after_pk: int, limit: int) -> list[Event]:
        """Events whose payload contains ``text`` (a user's sub), ids above ``after_pk``, in id order."""

    @abc.abstractmethod
    def rewrite_event(self, event_pk: int, payload: str, data: Any) -> None:
        """Replace a stored delivery's payload and data (the erasure of personal data)."""

    # The Checkout Sessions handed to users (``gateway.checkout``).
    @abc.abstractmethod
    def note_checkout_session(self, user_sub: str, session_id: str, customer: str, now: datetime,
                              forget_before: datetime) -> None:
        """Record a session of ``customer`` handed to the user (whose lock ``tx`` holds); the
        user's sessions created before ``forget_before``, which Stripe has expired since, are
        forgotten."""

    @abc.abstractmethod
    def checkout_sessions_of(self, user_sub: str, since: datetime) -> dict[str, str]:
        """The user's sessions recorded at ``since`` or later: session id -> customer."""

    @abc.abstractmethod
    def forget_checkout_sessions(self, user_sub: str) -> None:
        """Delete every session recorded for the user."""

    # Their subscriptions.
    @abc.abstractmethod
    def note_deleted_subscriptions(self, rows: list[DeletedSubscription]) -> None:
        """Record these; one whose (source, key) is recorded already stays as it is."""

    @abc.abstractmethod
    def note_bought_again(self, rows: list[DeletedSubscription]) -> None:
        """Record these, recorded before and bought again since (``bought_again``), as found
        again: each replaces its recorded row, unless that one is still pending."""

    @abc.abstractmethod
    def deleted_subscription_keys(self, user_subs: list[str]) -> set[tuple[str, str]]:
        """The (source, key) of every subscription recorded for these users."""

    @abc.abstractmethod
    def deleted_subscriptions_of(self, user_sub: str) -> list[DeletedSubscription]:
        """Every subscription recorded for the user, in (source, key) order."""

    @abc.abstractmethod
    def claim_late_purchases(self, now: datetime, lease_until: datetime, limit: int) -> list[DeletedSubscription]:
        """Up to ``limit`` pending late purchases due at ``now`` (``next_attempt_at``) that
        nobody holds a lease of at ``now``, each leased until ``lease_until`` (its
        ``leased_until`` as returned); skips those another transaction is claiming."""

    @abc.abstractmethod
    def claim_late_purchases_of(self, user_sub: str, now: datetime, lease_until: datetime) -> list[DeletedSubscription]:
        """The user's pending late purchases, due or not, that nobody holds a lease of at
        ``now``, leased as ``claim_late_purchases`` leases them."""

    @abc.abstractmethod
    def settle_late_purchase(self, row: DeletedSubscription, outcome: str, attempts: int,
                             next_attempt_at: datetime | None, last_error: str | None) -> bool:
        """Write what stopping ``row`` came to and end its lease, while it is still pending
        under the lease it was claimed with (``row.leased_until``); whether it was."""
