"""What an account deletion must have stopped, or reported for the user to stop, before it
is recorded."""
from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime

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
