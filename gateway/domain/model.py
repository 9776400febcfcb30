"""Store subscriptions as snapshots, and the newest-snapshot-wins rule."""
from __future__ import annotations

import dataclasses
import enum
from datetime import datetime

from . import terms
from .revocations import NO_REVOCATIONS, REPLACED, Revocations
from .terms import Term


class Status(str, enum.Enum):
    ACTIVE = "active"
    GRACE_PERIOD = "grace_period"
    BILLING_RETRY = "billing_retry"
    PAUSED = "paused"
    EXPIRED = "expired"
    REVOKED = "revoked"
    PENDING = "pending"


#: Statuses that grant access until ``expires_at``.
GRANTING = frozenset({Status.ACTIVE, Status.GRACE_PERIOD})

# Tie-break for snapshots of the same instant: the more final state wins, so that any
# order of deliveries stamped with the same (one-second) time converges on one state.
_FINALITY = {
    Status.PENDING: 0,
    Status.ACTIVE: 1,
    Status.GRACE_PERIOD: 2,
    Status.BILLING_RETRY: 3,
    Status.PAUSED: 4,
    Status.EXPIRED: 5,
    Status.REVOKED: 6,
}


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The state of one store subscription as the provider saw it at ``as_of``.

    ``user_sub`` is the Cognito sub when the delivery names it; otherwise ``account`` is the
    store-side identifier (Stripe customer, RevenueCat app user id, ...) a mapping may resolve.
    """

    source: str
    key: str
    as_of: datetime
    status: Status
    product_id: str | None = None
    expires_at: datetime | None = None
    will_renew: bool = False
    user_sub: str | None = None
    account: str | None = None
    environment: str | None = None
    #: The store under the source, where the source has several (RevenueCat's ``store``).
    store: str | None = None
    raw_status: str | None = None
    entitlements: tuple[str, ...] | None = None
    #: By name, each entitlement whose product, end or renewal is not the snapshot's (``Term``).
    entitlement_terms: tuple[Term, ...] | None = None
    #: This delivery takes back the period ending at ``expires_at`` (a refund, a
    #: chargeback, a voided order). The cause names what took it, ``reason:id`` (for
    #: example ``refunded:in_123``), so that only that cause can give it back.
    revokes: str | None = None
    #: The store shows ``revokes`` in every view of the period while it stands (the App
    #: Store's ``revocationDate``): a view of the period stamped after this one that does
    #: not show it tells the store reversed it (``Revocations.shown``).
    shows_revocation: bool = False
    #: When the store signed what this view shows, where that is earlier than ``as_of`` (the
    #: App Store's transaction ``signedDate`` inside a notification signed later): only a
    #: view whose content is newer than a revocation shown can tell it was reversed.
    #: ``None``: not known, and it tells nothing (``Revocations.shown_reversed``).
    shown_as_of: datetime | None = None
    #: A revocation given back by the store (a dispute won, a refund reversed): its cause.
    restores: str | None = None
    #: When the gateway began the read this snapshot stands on, by its own clock: the
    #: request to the store's API (``as_of`` is when the answer came), or, for an event's
    #: body judged newer than the stored state, the look at the stored state. The read
    #: holds only while nothing written since then says otherwise (``reads.stale_read``).
    read_since: datetime | None = None
    #: The store's id of the period shown, where the store names one: the payment behind
    #: it (an App Store ``transactionId``), or when it began (Stripe's
    #: ``current_period_start``). A revocation holds only the period it took back,
    #: whatever a later period ends, or the same period's end moves to.
    period_id: str | None = None
    #: The end and id of the period ``revokes`` takes back, where that is not the period
    #: shown: a Stripe refund takes the period its invoice paid, which may be an earlier
    #: one than the subscription shows now.
    revoked_period: tuple[datetime | None, str | None] | None = None

    def __post_init__(self) -> None:
        for name in ("as_of", "expires_at", "read_since", "shown_as_of"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} must be timezone-aware")


def precedence(snapshot: Snapshot) -> tuple:
    """Total order of snapshots of one subscription: newer first, then more final.

    Every field of the state takes part, so two different snapshots never tie and the
    newest-wins register converges whatever the order of arrival. Who holds the
    subscription is not state: the user and the store account are registers of their
    own (``Subscription``).
    """
    return (
        snapshot.as_of,
        _FINALITY[snapshot.status],
        snapshot.expires_at is None,
        snapshot.expires_at or snapshot.as_of,
        not snapshot.will_renew,
        snapshot.product_id or "",
        snapshot.environment or "",
        snapshot.store or "",
        snapshot.raw_status or "",
        snapshot.entitlements or (),
        snapshot.period_id or "",
        terms.rank(snapshot.entitlement_terms),
        # Of one stamp, the view of older content wins: it tells less of a reversal.
        snapshot.as_of - (snapshot.shown_as_of or snapshot.as_of),
    )


def supersedes(candidate: Snapshot, current: Snapshot | None) -> bool:
    """True when ``candidate`` should replace the stored ``current`` snapshot."""
    return current is None or _rank(candidate) > _rank(current)


def newest(snapshots) -> Snapshot | None:
    """The snapshot a store ends on after seeing all of ``snapshots`` in any order."""
    return max(snapshots, key=_rank, default=None)


def _rank(snapshot: Snapshot) -> tuple:
    """``precedence``, below which a replacement, no view of the store, ranks: any view of
    the purchase outranks it, whatever their stamps (``replacement``)."""
    return snapshot.raw_status != REPLACEMENT, precedence(snapshot)


@dataclasses.dataclass(frozen=True)
class Subscription:
    """What the store keeps per subscription: the newest snapshot, its owner, and what
    was revoked.

    ``latest`` is the newest snapshot as the store showed it; ``snapshot`` is what it
    means for access, with the revocations applied. The merge (``merge_snapshot``) runs in the
    transaction holding the subscription's lock: every rule here sees the state as committed.

    The owner is a register of its own, stamped with the time of the delivery that named it (``owner_as_of``):
    a delivery that names a user moves ownership only if it is at least as new, so a late delivery never
    undoes a transfer. Without a named owner, the owner is whoever the identity mapping gives for the store
    account (``latest.account``, the newest account any delivery gave, at ``account_as_of``).

    ``updated_at`` is when the gateway last wrote it (its own clock, set by the store): not
    part of what it is, so two subscriptions that differ only there are equal.
    """

    latest: Snapshot
    owner: str | None = None
    owner_as_of: datetime | None = None
    account_as_of: datetime | None = None
    revocations: Revocations = NO_REVOCATIONS
    #: The stamp of the oldest snapshot seen of it: it began no later (``changes.transferred``).
    #: ``None``: not known (a row stored before the gateway kept it).
    first_as_of: datetime | None = None
    updated_at: datetime | None = dataclasses.field(default=None, compare=False)

    @property
    def snapshot(self) -> Snapshot:
        """The subscription as it counts for access: revoked where a revocation holds."""
        latest = self.latest
        if latest.status is Status.REVOKED or not self.revocations.taken:
            return latest
        cause = self.revocations.holding(latest)
        return revoked(latest, cause.partition(":")[0] or "revoked") if cause else latest


def _owner_claim(as_of: datetime | None, owner: str | None) -> tuple:
    if as_of is None:
        return (False, 0.0, owner or "")
    return (True, as_of.timestamp(), owner or "")


def merge_snapshot(current: Subscription | None, snapshot: Snapshot) -> Subscription:
    """The subscription after seeing ``snapshot``; commutative and idempotent."""
    named = snapshot.user_sub
    stripped = dataclasses.replace(snapshot, user_sub=None, revokes=None, restores=None, read_since=None,
                                   revoked_period=None, shows_revocation=False)
    revocations = (current.revocations if current else NO_REVOCATIONS).seeing(snapshot)
    if current is None:
        return Subscription(stripped, named, snapshot.as_of if named else None,
                            snapshot.as_of if snapshot.account else None, revocations, snapshot.as_of)
    state = stripped if supersedes(stripped, current.latest) else current.latest
    account, account_as_of = current.latest.account, current.account_as_of
    if snapshot.account and _owner_claim(snapshot.as_of, snapshot.account) > _owner_claim(account_as_of, account):
        account, account_as_of = snapshot.account, snapshot.as_of
    first = current.first_as_of and min(current.first_as_of, snapshot.as_of)
    updated = Subscription(dataclasses.replace(state, account=account), current.owner,
                           current.owner_as_of, account_as_of, revocations, first)
    return claim_ownership(updated, named, snapshot.as_of) if named else updated


def claim_ownership(current: Subscription, owner: str | None, as_of: datetime) -> Subscription:
    """Ownership claimed at ``as_of`` (``None``: nobody holds it): kept only if it is
    the newest claim."""
    if _owner_claim(as_of, owner) > _owner_claim(current.owner_as_of, current.owner):
        return dataclasses.replace(current, owner=owner, owner_as_of=as_of)
    return current


def with_account_owner(current: Subscription, owner: str | None) -> Subscription:
    """The owner the identity mapping gives for the account, unless a delivery named one."""
    if current.owner_as_of is None:
        return dataclasses.replace(current, owner=owner)
    return current


def link_claim(as_of: datetime | None, user_sub: str) -> tuple:
    """Order of competing identity links for one account: newest, then by name."""
    return _owner_claim(as_of, user_sub)


#: The store status of a ``replacement``.
REPLACEMENT = "REPLACED"


def replacement(source: str, key: str, as_of: datetime, by: str) -> Snapshot:
    """What the purchase ``by`` says of ``key``, the purchase it replaced (a Google upgrade,
    by ``linkedPurchaseToken``): it grants no more, whatever the store goes on showing of it
    (the ``REPLACED`` cause, of every period). It is no view of the store and carries none:
    a view, merged before or after it, stays what the purchase shows (its product, end and
    add-ons, expired, not vanished), as held under the lock, not as read before it."""
    return Snapshot(source, key, as_of, Status.EXPIRED, raw_status=REPLACEMENT,
                    revokes=f"{REPLACED}:{by}", revoked_period=(None, None))


def revoked(snapshot: Snapshot, reason: str) -> Snapshot:
    """The snapshot with its period taken back (a refund, a dispute, a voided purchase), or
    ended by a replacement."""
    status = Status.EXPIRED if reason == REPLACED else Status.REVOKED
    ended = tuple(term._replace(will_renew=False) for term in snapshot.entitlement_terms or ()) or None
    return dataclasses.replace(snapshot, status=status, will_renew=False, entitlement_terms=ended,
                               raw_status=f"{snapshot.raw_status}:{reason}")
