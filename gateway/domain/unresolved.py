"""Subscriptions whose stored state the store has not settled yet, and how long each store
may take to settle one: reconcile re-reads them however long ago their period ended, so
that a recovery whose webhook was lost never leaves a paying user locked out.

A subscription in one of ``UNRESOLVED`` is waiting on the store: a payment being retried
(grace period, billing retry, Play's account hold), a pause, a payment not yet completed.
Its stored ``expires_at`` is the end of the last period paid (the grace period's end while
in one). The store resolves it by a recovery, a resumption or a payment (a new period) or
by its end (expired); either way the next read stores something else, so a subscription
is re-read daily only while the store still says it is unresolved, and not past
``SETTLED_WITHIN`` after its ``expires_at``.

A subscription stored as renewing (``RENEWING``, ``will_renew``) whose ``expires_at`` has
passed is unresolved too: the store has since renewed it or begun to retry its payment
(the renewal's webhook lost, while reconcile did not run), or ended it. The user paid and
is locked out meanwhile. Read, it leaves the set: a renewal stores a later ``expires_at``,
a retry or an end another status. A store that answers nothing (a fetch that keeps
failing) leaves it as it was: read again daily, up to the same bound.

A revoked subscription of a store whose reads show the refund (``REVOKED_UNTIL_THE_END``)
is unresolved too until its period ends: the store may reverse the refund.
"""
from __future__ import annotations

from datetime import timedelta

from .model import Status

#: Sources whose reads show a refund while it stands (``Snapshot.shows_revocation``: the
#: App Store's ``revocationDate``, removed when Apple reverses the refund): a subscription
#: stored as ``REVOKED`` is re-read until its period ends, so that a reversal whose
#: notification was lost (REFUND_REVERSED) is seen by the next run. The period's end bounds
#: it: past it, the reversal gives back nothing to grant.
REVOKED_UNTIL_THE_END = frozenset({"apple"})

UNRESOLVED = frozenset({Status.GRACE_PERIOD, Status.BILLING_RETRY, Status.PAUSED, Status.PENDING})
#: Unresolved once its ``expires_at`` has passed, while ``will_renew``.
RENEWING = Status.ACTIVE

#: Per source, the longest a subscription stays unresolved after its stored ``expires_at``
#: (a renewing one is settled at its renewal, then retried within these bounds).
SETTLED_WITHIN = {
    # "the App Store attempts to renew the subscription for up to 60 days" (Handling
    # lapsed subscriptions); a billing grace period (at most 28 days) lies within them.
    "apple": timedelta(days=60),
    # Play: a grace period of up to 30 days, then an account hold, by default (since
    # 2025-12-01) 60 days minus the grace period; a pause of up to 3 months, from the end of
    # the period paid. A token is readable until 60 days after the subscription expired.
    # https://developer.android.com/google/play/billing/lifecycle/subscriptions
    # https://support.google.com/googleplay/android-developer/answer/16631229
    "google": timedelta(days=92),
    # Stripe retries a failed renewal for at most 2 months (Smart Retries' longest policy)
    # from the renewal, which began the period whose end is stored as ``expires_at``. A trial
    # paused for want of a payment method has no documented end: read for 2 months after.
    # https://docs.stripe.com/billing/revenue-recovery/smart-retries
    "stripe": timedelta(days=62),
    # RevenueCat's BILLING_ISSUE and pauses are those of the store underneath: the longest
    # of them, Play's 3-month pause.
    "revenuecat": timedelta(days=92),
}
