"""What an account deletion must have stopped, or reported for the user to stop, before it
is recorded."""
from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable
from datetime import datetime, timedelta

from .model import Status, Subscription

_ENDED = (Status.EXPIRED, Status.REVOKED)


def is_live(subscription: Subscription, now: datetime) -> bool:
    """Whether the subscription may still bill or grant: not ended, and not past its end
    unless it renews."""
    snapshot = subscription.snapshot
    return snapshot.status not in _ENDED and (
        snapshot.will_renew or snapshot.expires_at is None or snapshot.expires_at > now)


def unstopped(held: Iterable[Subscription], stopped: Collection[tuple[str, str]], now: datetime) -> list[Subscription]:
    """The subscriptions of ``held`` live at ``now`` that the deletion neither stopped nor
    reported (``stopped``: the (source, key) of those it did).

    The deletion stops billing outside any transaction, on a read of the user's
    subscriptions; a purchase stored after that read (bought in another tab, delivered
    while the store's cancel was in flight) would be left billing a user who can no longer
    cancel it. So this is decided again on ``held`` as the deletion's transaction holds
    it, under the user's lock: with any left, the deletion is not recorded but goes round
    again."""
    return [s for s in held if is_live(s, now) and (s.snapshot.source, s.snapshot.key) not in stopped]


#: How long a Checkout Session can be paid: Stripe expires one 24 hours after it was made at
#: the latest (``expires_at``, https://docs.stripe.com/api/checkout/sessions/create).
SESSION_LIFETIME = timedelta(hours=24)


def unexpired(handed_out: Iterable[str], closed: Collection[str]) -> list[str]:
    """The Checkout Sessions handed to the user (``handed_out``, as recorded under the user's
    lock) that the deletion neither expired nor found closed (``closed``).

    The deletion expires sessions outside any transaction, on a read of those recorded; a
    checkout records its session, against the tombstone and under the same lock, before it
    hands out the URL. One recorded after that read would stay payable by a user who is
    gone, so this is decided again in the deletion's transaction: with any left, the
    deletion is not recorded but goes round again. A session opened once the tombstone is
    committed is refused by the checkout itself and never handed out."""
    return sorted(set(handed_out) - set(closed))


def stands(tombstone: dict | None) -> bool:
    """Whether the account may be handed a Checkout or Customer Portal session: no deletion
    is recorded for it (``tombstone``: the deletion's report, or None). Stripe is called
    outside any lock, so a session is made first, and its URL handed out only if this holds
    on the tombstone read again under the user's lock (``gateway.checkout``)."""
    return tombstone is None


#: What a store's cancel came to; ``ENDED``: the store bills nothing any more.
CANCELLED, ENDED = "cancelled", "ended"
#: ``DeletedSubscription.outcome``: covered by the deletion's own report.
REPORTED = "reported"
#: Found after the deletion; the gateway still has to stop its billing or report it.
PENDING = "pending"


@dataclasses.dataclass(frozen=True)
class DeletedSubscription:
    """A subscription of a deleted user the gateway has dealt with: stopped or reported by
    the deletion (``REPORTED``), or bought after it (a late purchase: ``PENDING`` until the
    gateway has cancelled it or found it for the user to cancel, then what that came to)."""

    source: str
    key: str
    user_sub: str
    product_id: str | None
    outcome: str
    found_at: datetime
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    leased_until: datetime | None = None  # being stopped now, by whoever took it, until then


#: Sources whose store accounts, where a delivery names no user, name an app install rather
#: than a person: RevenueCat's anonymous app user ids (``$RCAnonymousID:...``, the only ids
#: of its deliveries that name no user, ``providers.revenuecat_events``).
INSTALL_ACCOUNTS = frozenset({"revenuecat"})

#: How RevenueCat's anonymous app user ids begin: an app install's, never a user's sub.
ANONYMOUS_APP_USER = "$RCAnonymousID:"


def kept_account_holds(subscription: Subscription, deleted_at: datetime | None) -> bool:
    """Whether the store account of ``subscription``, kept by the tombstone of a user deleted
    at ``deleted_at``, makes it that user's (a late purchase) when no delivery names its owner.

    A Stripe customer, an App Store original transaction id or a Play purchase token is the
    user's whenever the purchase under it was made. A RevenueCat anonymous id is an app
    install's, and RevenueCat names a customer's users in every event (``aliases``: "all app
    user ids ever used by the subscriber"): a purchase whose events name that id alone is a
    customer's that no user holds, which is the deleted user's only if it was made while
    the id was theirs, seen no later than the deletion (``first_as_of``; either unknown, it
    may be as old as any). One seen only since is whoever's uses that install now: nobody's
    until an event names them."""
    if subscription.snapshot.source not in INSTALL_ACCOUNTS:
        return True
    first = subscription.first_as_of
    return first is None or deleted_at is None or first <= deleted_at


def bought_again(before: Subscription | None, after: Subscription, now: datetime) -> bool:
    """Whether ``after``, the state of a subscription the gateway has dealt with, is a
    purchase made anew under its key: it had ended (``before``: as stored until now) and is
    live again. The App Store keeps the ``originalTransactionId`` when the user buys the
    subscription again after it lapsed (``SUBSCRIBED``, ``RESUBSCRIBE``), and RevenueCat
    its original transaction id; a renewal, or another delivery of the same period, finds
    it live and is not one."""
    return before is not None and not is_live(before, now) and is_live(after, now)


def late_purchases(held: Iterable[Subscription], known: Collection[tuple[str, str]], now: datetime,
                   user_sub: str) -> list[DeletedSubscription]:
    """The purchases of a deleted user, as ``held`` under the user's lock, that still bill
    or grant and that neither the deletion nor an earlier delivery dealt with (``known``:
    their (source, key)): each to stop, due at once."""
    return [DeletedSubscription(s.snapshot.source, s.snapshot.key, user_sub, s.snapshot.product_id, PENDING, now,
                                next_attempt_at=now) for s in unstopped(held, known, now)]


def with_late(report: dict, late: Iterable[DeletedSubscription], stores: dict[str, str]) -> dict:
    """The deletion's ``report`` with the late purchases settled since: each ``cancelled``,
    or for the user to cancel with the reason (``after_deletion`` marks them); one the
    store no longer bills (``ended``) or still pending is left out."""
    answer = {"cancelled": list(report.get("cancelled", [])), "user_must_cancel": list(report.get("user_must_cancel", []))}
    for row in sorted(late, key=lambda r: (r.found_at, r.source, r.key)):
        item = {"source": row.source, "store": stores.get(row.source, row.source), "product_id": row.product_id,
                "after_deletion": True}
        if row.outcome == CANCELLED:
            answer["cancelled"].append(item)
        elif row.outcome not in (ENDED, PENDING, REPORTED):
            answer["user_must_cancel"].append({**item, "reason": row.outcome})
    return answer

