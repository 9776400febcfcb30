"""What a verified delivery asks the store to change."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime

from .model import Snapshot, Subscription, claim_ownership


@dataclasses.dataclass(frozen=True)
class Link:
    """A store-side account (Stripe customer, RevenueCat app user id, Apple original
    transaction id, Google purchase token) belongs to a Cognito user, as of ``as_of``.

    When two links name different users for one account, the newer one holds (no stamp
    is the oldest), so the mapping does not depend on the order links arrive in.

    ``carries``: the account is a purchase (a Google purchase token) under which a later
    purchase that replaced it is held while that one's owner is unknown; the owner goes
    on to it, and from it to the purchases held under its own key in turn.
    """

    source: str
    account: str
    user_sub: str
    as_of: datetime | None = None
    carries: bool = False


@dataclasses.dataclass(frozen=True)
class Transfer:
    """Subscriptions held by ``from_accounts`` now belong to ``to_user`` (RevenueCat);
    to nobody when ``to_user`` is ``None`` (a transfer to anonymous ids only).

    ``store`` and ``environment``, where named, bound what it moves (``moves``): a restore
    moves what the store account on the device bought, in that store's environment."""

    source: str
    from_accounts: tuple[str, ...]
    to_user: str | None
    as_of: datetime
    store: str | None = None
    environment: str | None = None

    def moves(self, subscription: Subscription) -> bool:
        """Whether ``subscription`` is of this transfer's store and environment; either
        unknown on either side (a row stored before the gateway kept the store), it may be."""
        snapshot = subscription.snapshot
        return all(not mine or not theirs or mine == theirs for mine, theirs in (
            (self.store, snapshot.store), (self.environment, snapshot.environment)))


def transferred(current: Subscription, register: Iterable[Transfer]) -> Subscription:
    """``current`` after the recorded transfers (``register``) in the order of their stamps.

    Each moves it when its from-set names the owner it has by then, or its store account;
    a transfer only takes it from an older claim (``claim_ownership``). Replayed from the
    claim held, a transfer that arrives late still takes its place among the others: one
    B->A recorded while B held nothing moves the purchase back once A->B, older, gives it
    to B. Decided under the lock of the subscription and of the source's register.

    A transfer moves only a purchase of its store and environment (``Transfer.moves``),
    seen no later than its stamp (``first_as_of``):
    RevenueCat moves what the ids hold when it transfers, and names the holder in every
    event, so a purchase whose every event is stamped after the transfer was not moved by
    it; one bought under an anonymous id after that id's purchases were transferred names
    no user who could claim it back. Unknown (``None``): it may be older than any.
    """
    for transfer in sorted(register, key=lambda t: (t.as_of, t.to_user or "", t.from_accounts, t.store or "",
                                                   t.environment or "")):
        if current.first_as_of is not None and current.first_as_of > transfer.as_of or not transfer.moves(current):
            continue
        if current.owner in transfer.from_accounts or current.snapshot.account in transfer.from_accounts:
            current = claim_ownership(current, transfer.to_user, transfer.as_of)
    return current


@dataclasses.dataclass(frozen=True)
class Translation:
    snapshots: tuple[Snapshot, ...] = ()
    links: tuple[Link, ...] = ()
    transfers: tuple[Transfer, ...] = ()
    #: Why nothing is applied, for a verified delivery of no interest.
    ignored_reason: str | None = None
    #: The source keeps a register of transfers (RevenueCat): a subscription whose owner
    #: or account these snapshots and links change answers to the transfers recorded from
    #: them, so a transfer delivered before the purchase it moves still moves it.
    transferable: bool = False
    #: Of a delivery that changes nothing: the users (Cognito subs) and store accounts
    #: ((source, account)) it names, so that one about a deleted user is erased like the
    #: deliveries the deletion found (Stripe's ``customer.deleted``).
    named_users: tuple[str, ...] = ()
    named_accounts: tuple[tuple[str, str], ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.snapshots or self.links or self.transfers)


def ignored(reason: str, users: Iterable[str | None] = (),
            accounts: Iterable[tuple[str, str | None]] = ()) -> Translation:
    """Nothing to apply, for ``reason``; ``users`` and ``accounts``: whom it names (none
    counted twice, a ``None`` not at all)."""
    return Translation(ignored_reason=reason, named_users=tuple(dict.fromkeys(u for u in users if u)),
                       named_accounts=tuple(dict.fromkeys(a for a in accounts if a[1])))
