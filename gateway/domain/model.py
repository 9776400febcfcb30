"""Store subscriptions as snapshots, and the newest-snapshot-wins rule."""
from __future__ import annotations

import dataclasses
import enum
from datetime import datetime


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

    ``user_sub`` is the Cognito sub when the delivery names it; otherwise ``account``
    is the store-side identifier (Stripe customer, RevenueCat app user id, ...) that an
    identity mapping may resolve later.
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
    raw_status: str | None = None
    entitlements: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("as_of", "expires_at"):
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
        snapshot.raw_status or "",
        snapshot.entitlements or (),
    )


def supersedes(candidate: Snapshot, current: Snapshot | None) -> bool:
    """True when ``candidate`` should replace the stored ``current`` snapshot."""
    return current is None or precedence(candidate) > precedence(current)


def newest(snapshots) -> Snapshot | None:
    """The snapshot a store ends on after seeing all of ``snapshots`` in any order."""
    return max(snapshots, key=precedence, default=None)


@dataclasses.dataclass(frozen=True)
class Subscription:
    """What the store keeps per subscription: the newest snapshot and its owner.

    The owner is a register of its own, stamped with the time of the delivery that
    named it (``owner_as_of``): a delivery that names a user moves ownership only if it
    is at least as new, so a late delivery never undoes a transfer. Without a named
    owner, the owner is whoever the identity mapping gives for the store account
    (``snapshot.account``, the newest account any delivery gave, at ``account_as_of``).
    """

    snapshot: Snapshot
    owner: str | None = None
    owner_as_of: datetime | None = None
    account_as_of: datetime | None = None


def _owner_claim(as_of: datetime | None, owner: str | None) -> tuple:
    if as_of is None:
        return (False, 0.0, owner or "")
    return (True, as_of.timestamp(), owner or "")


def absorb(current: Subscription | None, snapshot: Snapshot) -> Subscription:
    """The subscription after seeing ``snapshot``; commutative and idempotent."""
    named, stripped = snapshot.user_sub, dataclasses.replace(snapshot, user_sub=None)
    if current is None:
        return Subscription(stripped, named, snapshot.as_of if named else None,
                            snapshot.as_of if snapshot.account else None)
    state = stripped if supersedes(stripped, current.snapshot) else current.snapshot
    account, account_as_of = current.snapshot.account, current.account_as_of
    if snapshot.account and _owner_claim(snapshot.as_of, snapshot.account) > _owner_claim(account_as_of, account):
        account, account_as_of = snapshot.account, snapshot.as_of
    updated = Subscription(dataclasses.replace(state, account=account), current.owner,
                           current.owner_as_of, account_as_of)
    return reassign(updated, named, snapshot.as_of) if named else updated


def reassign(current: Subscription, owner: str, as_of: datetime) -> Subscription:
    """Ownership claimed at ``as_of``: kept only if it is the newest claim."""
    if _owner_claim(as_of, owner) > _owner_claim(current.owner_as_of, current.owner):
        return dataclasses.replace(current, owner=owner, owner_as_of=as_of)
    return current


def adopt(current: Subscription, owner: str | None) -> Subscription:
    """The owner the identity mapping gives for the account, unless a delivery named one."""
    if current.owner_as_of is None:
        return dataclasses.replace(current, owner=owner)
    return current


def link_claim(as_of: datetime | None, user_sub: str) -> tuple:
    """Order of competing identity links for one account: newest, then by name."""
    return _owner_claim(as_of, user_sub)


def revoked(snapshot: Snapshot, reason: str) -> Snapshot:
    """The snapshot with its period taken back (a refund, a dispute, a voided purchase)."""
    return dataclasses.replace(snapshot, status=Status.REVOKED, will_renew=False,
                               raw_status=f"{snapshot.raw_status}:{reason}")


def keep_revocation(snapshot: Snapshot, held: Snapshot | None) -> Snapshot:
    """A refund revokes the period it paid for. A later view of the same period (stores
    keep showing the subscription as it was before the refund) does not restore access;
    a renewal into a new period, one that ends later, does."""
    if held is None or held.status is not Status.REVOKED or snapshot.status is Status.REVOKED:
        return snapshot
    if snapshot.expires_at and held.expires_at and snapshot.expires_at > held.expires_at:
        return snapshot
    return revoked(snapshot, (held.raw_status or "").rpartition(":")[2] or "revoked")
