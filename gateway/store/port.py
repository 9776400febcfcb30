"""The store port the use cases speak to.

A ``Store`` hands out transactions. Inside one, ``lock_subscriptions`` and ``lock_users``
serialize writers of the same subscription or user until the transaction ends, so two
concurrent deliveries never both read the old state and write over each other.
"""
from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

from gateway.domain.entitlement_events import FeedEvent
from gateway.domain.entitlements import Grant
from gateway.domain.events import Event
from gateway.domain.changes import Transfer
from gateway.domain.model import Subscription
from gateway.store.port_deletions import DeletionsPort


class StoreUnavailable(Exception):
    """The database cannot durably store or read right now."""


class StoreRefused(Exception):
    """The database refused what it was given, for good: a value out of range or too long
    for its column, a constraint broken. Retrying the same input cannot succeed, so it is
    never answered or retried as an outage."""


#: The largest event id (a BIGINT); a larger number names no row, and overflows SQLite.
MAX_ROW_ID = 2**63 - 1


class Transaction(DeletionsPort):
    """What the use cases do inside one transaction. Several items at once, for deliveries
    applied together: a database does each call in one round trip or two."""

    # Event log.
    @abc.abstractmethod
    def record_events(self, events: list[dict[str, Any]]) -> list[Event | None]:
        """Insert each delivery, in order; ``None`` for one whose (source, event_id) is
        already recorded, or repeats an earlier one of the list.

        Each is a dict of ``source``, ``event_id``, ``event_type``, ``received_at``,
        ``payload``, ``data`` and, for a delivery applied in the same transaction, its
        outcome (``status``, ``processed_at``, ``last_error``), which then counts as its
        first attempt; otherwise it is ``received``.
        """

    def record_events_later(self, events: list[dict[str, Any]]) -> Callable[[], list[Event | None]]:
        """``record_events``, its answer given when the returned call is made: a database
        sends the rows now and may read what they answered with the next statement it
        waits for. The statements run in the same order either way."""
        answers = self.record_events(events)
        return lambda: answers

    @abc.abstractmethod
    def get_event(self, event_pk: int) -> Event | None: ...

    @abc.abstractmethod
    def update_event(self, event_pk: int, **fields: Any) -> None: ...

    @abc.abstractmethod
    def update_claimed_event(self, event_pk: int, claim: datetime | None, **fields: Any) -> bool:
        """Update the event only while it waits to be applied (``received`` or ``deferred``)
        under ``claim``, the ``next_attempt_at`` its applier found or set; whether it did.
        The retry worker takes an event over by leasing it anew, and from then on the one
        it took it from writes nothing (``Ingest.process``)."""

    @abc.abstractmethod
    def hold_event(self, event_pk: int) -> bool:
        """Whether the event is still in the log, kept there until this transaction ends
        (the retention's batches pass over a row held)."""

    @abc.abstractmethod
    def claim_due_events(self, *, now: datetime, stale_before: datetime, lease_until: datetime,
                         limit: int) -> list[Event]:
        """Deferred events whose time has come, and received events left unapplied since
        before ``stale_before``; each is leased until ``lease_until`` so that concurrent
        workers never take the same event."""

    @abc.abstractmethod
    def search_events(self, *, source: str | None = None, status: str | None = None,
                      event_type: str | None = None, event_id: str | None = None,
                      since: datetime | None = None, until: datetime | None = None,
                      before_pk: int | None = None, limit: int = 50) -> list[Event]:
        """The newest events first, filtered; ``before_pk`` pages towards older ones."""

    @abc.abstractmethod
    def count_events(self, statuses: tuple[str, ...]) -> dict[tuple[str, str], int]:
        """How many events of each (source, status), for the listed statuses."""

    # Evidence: which subscriptions a delivery touched (the explain API, the admin).
    @abc.abstractmethod
    def link_events(self, links: list[tuple[int, list[tuple[str, str]]]]) -> None:
        """Record, for each (event_pk, keys), that the event touched these (source, key)
        subscriptions; idempotent."""

    @abc.abstractmethod
    def event_links(self, event_pks: list[int]) -> dict[int, list[tuple[str, str]]]:
        """The (source, key) pairs each listed event touched, in key order."""

    @abc.abstractmethod
    def events_touching(self, keys: list[tuple[str, str]], *, before_pk: int | None = None,
                        limit: int = 100) -> list[Event]:
        """Events that touched any of ``keys``, newest first, ids below ``before_pk``."""

    # Subscriptions.
    @abc.abstractmethod
    def get_subscription(self, source: str, key: str) -> Subscription | None: ...

    def lock_subscriptions(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Subscription | None]:
        """The stored subscription of each (source, key), locked in key order against
        other writers until the end (a store that runs one writer at a time reads them)."""
        return {key: self.get_subscription(*key) for key in sorted(set(keys))}

    @abc.abstractmethod
    def save_subscriptions(self, subscriptions: list[Subscription], now: datetime) -> None:
        """Write each; at most one per (source, key)."""

    @abc.abstractmethod
    def subscriptions_of_users(self, user_subs: list[str]) -> dict[str, list[Subscription]]:
        """The subscriptions each user owns."""

    @abc.abstractmethod
    def lock_held_by(self, source: str, accounts: tuple[str, ...], owners: tuple[str, ...]) -> list[Subscription]:
        """The subscriptions of ``source`` whose account or owner is listed, locked for
        update like ``lock_subscriptions``, in key order."""

    @abc.abstractmethod
    def subscriptions_to_reconcile(self, source: str, expires_from: datetime, expires_to: datetime,
                                   limit: int = 10_000, after: str | None = None,
                                   unresolved_from: datetime | None = None) -> list[Subscription]:
        """Subscriptions of ``source`` worth re-reading from the store's API, in key order
        (the database's), the first ``limit`` of those with a key after ``after``: those
        expiring between ``expires_from`` and ``expires_to``; unless they ended before
        ``expires_from``, those whose owner is still unknown; and unless they ended before
        ``unresolved_from`` (default ``expires_from``), those the store has not settled
        (``unresolved.UNRESOLVED``: a payment retried, a pause, a payment pending may have
        ended in a recovery unseen) and those stored as renewing that ended before
        ``expires_from`` (``unresolved.RENEWING``: a renewal unseen); for a source in
        ``unresolved.REVOKED_UNTIL_THE_END``, those stored as revoked whose period ends
        after ``expires_to`` (a reversal unseen)."""

    @abc.abstractmethod
    def reconcile_cursor(self, source: str) -> str | None:
        """The last key the reconcile of ``source`` finished (None: start from the first)."""

    @abc.abstractmethod
    def move_reconcile_cursor(self, source: str, last_key: str, now: datetime) -> None: ...

    # Identities.
    @abc.abstractmethod
    def resolve(self, source: str, account: str) -> str | None: ...

    @abc.abstractmethod
    def link(self, source: str, account: str, user_sub: str, as_of: datetime | None,
             now: datetime) -> str | None:
        """Map ``account`` to ``user_sub`` unless a newer link (``link_claim``) holds it or
        the user was deleted (``mark_deleted``: a late delivery links nothing to them);
        returns the user the account maps to afterwards, ``None`` for nobody."""

    def lock_accounts(self, accounts: list[tuple[str, str]]) -> None:
        """Serialize, until the end of the transaction, every writer that links or
        resolves one of these (source, account) pairs: a link and a new subscription of
        the same account then see each other, whichever commits first. Lock order,
        everywhere: accounts, then subscriptions, then users. A store that runs one
        writer at a time needs nothing here."""

    # The transfer register (``tables.transfers``); its writers hold the source's lock.
    @abc.abstractmethod
    def record_transfer(self, transfer: Transfer, now: datetime) -> None:
        """Record one entry per account ``transfer`` moves from; of two from one account
        stamped alike, the greater claim (``link_claim`` of the user) stays."""

    @abc.abstractmethod
    def transfers_from(self, source: str, accounts: list[str]) -> list[Transfer]:
        """The recorded entries of ``source`` from any of ``accounts``, one account each."""

    # Entitlements.
    @abc.abstractmethod
    def lock_users(self, user_subs: list[str]) -> None: ...

    @abc.abstractmethod
    def replace_entitlements_of(self, grants: dict[str, list[Grant]], now: datetime) -> None:
        """Each user's entitlements become exactly these; the users are locked (``lock_users``)."""

    @abc.abstractmethod
    def entitlements_of(self, user_sub: str) -> list[Grant]: ...

    @abc.abstractmethod
    def read_entitlements(self, user_subs: list[str]) -> tuple[dict[str, list[Grant]], set[str]]:
        """Each user's stored entitlement rows (the users locked first), and which of the
        users were deleted at their request (``delete_user``)."""

    def read_users(self, user_subs: list[str], owners: list[str]) -> tuple[
            dict[str, list[Grant]], set[str], dict[str, list[Subscription]]]:
        """``read_entitlements(user_subs)`` and ``subscriptions_of_users(owners)`` (none
        read when ``owners`` is empty): a database may send them together."""
        before, deleted = self.read_entitlements(user_subs)
        return before, deleted, self.subscriptions_of_users(owners) if owners else {}

    # The entitlement feed.
    @abc.abstractmethod
    def take_feed_positions(self, count: int) -> tuple[int, datetime]:
        """Reserve the next ``count`` feed positions: returns the last position taken
        before them and the time through which lapsed entitlements were reported expired.

        Locks the feed's clock until the end of the transaction, so feed positions commit
        in order and without gaps: call it last, after every other lock (a rollback gives
        the positions back)."""

    @abc.abstractmethod
    def feed_head(self) -> tuple[int, datetime | None]:
        """The last position taken and the expiry sweep's mark, read without a lock;
        (0, None) before the clock's row exists (``take_feed_positions`` creates it)."""

    @abc.abstractmethod
    def append_feed(self, events: list[FeedEvent], expiries_through: datetime | None = None) -> None:
        """Write these events, numbered from ``take_feed_positions``; ``expiries_through``
        moves the expiry sweep's mark."""

    @abc.abstractmethod
    def read_feed(self, after: int, limit: int, user_sub: str | None = None) -> list[FeedEvent]:
        """Events after position ``after``, in position order; of one user when named."""

    @abc.abstractmethod
    def feed_pruned_through(self) -> int:
        """The highest position the feed's retention deleted (0: none); read after the events."""

    @abc.abstractmethod
    def said_inactive(self, pairs: set[tuple[str, str]]) -> set[tuple[str, str]]:
        """Of these (user, entitlement) pairs, those whose last feed event left them
        inactive (a lapse already reported); the users locked first."""

    @abc.abstractmethod
    def lapsed_grants(self, after: datetime, through: datetime, limit: int | None) -> list[tuple[str, datetime]]:
        """(user, end) of each granting entitlement whose period ends in (``after``,
        ``through``], by end, at most ``limit``: what the expiry sweep reports."""

    # Consumers of the feed inside the gateway.
    @abc.abstractmethod
    def feed_cursor(self, name: str) -> int | None:
        """The feed position the consumer ``name`` has handled up to; None: it never ran."""

    @abc.abstractmethod
    def move_feed_cursor(self, name: str, position: int, now: datetime) -> None: ...


class Store(abc.ABC):
    #: Whether the database announces every committed change of entitlements (``listen``).
    announces_changes = False

    @abc.abstractmethod
    def transaction(self, readonly: bool = False) -> contextlib.AbstractContextManager[Transaction]:
        """Commit on a clean exit, roll back on an exception.

        A ``readonly`` transaction must only read; it never waits for writers. As under
        READ COMMITTED, a statement may see commits made after the previous one (on
        PostgreSQL it runs in autocommit).
        Raises ``StoreUnavailable`` when the database cannot be reached or written, and
        ``StoreRefused`` when it refuses the statements' values (nothing was committed).
        """

    def ping(self) -> None:
        with self.transaction(readonly=True):
            pass

    def entitlements_of(self, user_sub: str) -> list[Grant]:
        """The entitlement read every app launch makes: ``Transaction.entitlements_of`` in
        a read-only transaction of its own (a store may answer it by a shorter path)."""
        with self.transaction(readonly=True) as tx:
            return tx.entitlements_of(user_sub)

    def listen(self, forget, forget_everyone):
        """A listener (``notify.ChangeListener``) handing ``forget`` each user whose
        entitlements any process changed, or None where the database announces nothing."""
        return None

    def close(self) -> None:
        """Let go of the store's connections (and its listener's)."""
