"""Purchases made after an account deletion: found, stopped where the store lets the
gateway, reported where it does not.

A deletion stops or reports what the user holds when it is recorded (``accounts``); a
purchase stored after it (a Checkout the user completed moments later, an App Store, Play
or RevenueCat purchase under the deleted sub, or naming nobody under a store account the
tombstone keeps: ``owner``) grants nothing, the tombstone sees to that, but it bills. So:

1. Found (``note``) in the transaction that stores it, under the user's lock, on the
   user's subscriptions as that transaction holds them: one live and not among those the
   deletion dealt with, nor found before, is recorded ``pending`` (``domain.deletion``),
   with a warning in the log; so is one of those that had ended and is bought again under
   the same key (an App Store resubscription: ``bought_again``), once per purchase. A
   deletion that commits while the purchase waits on the user's lock is then read; one
   that waits on the purchase's finds it (``accounts.erase``).
2. Stopped (``LatePurchases``, a chore of the worker) outside any transaction, the way the
   deletion stops billing (``AccountDeletion.stop``): a Stripe or Play subscription is
   cancelled at once, an App Store or RevenueCat one is for the user to cancel. A store
   that cannot answer now leaves it pending, tried again with a growing backoff (30 s up
   to six hours), for as long as it takes: it bills until then. The outcome is written
   under the lease the worker took, so two workers never both settle it.
3. Answered: the deletion asked again (``DELETE /v1/me``, ``flask users delete``) stops
   what is still pending itself, due or not, then adds each late purchase to its first
   report (``domain.deletion.with_late``). It claims them as the worker does, under the
   rows' locks and a lease (``leased_until``) of its own, and leaves one the worker holds
   (pending, left out of the answer): the store is asked to stop it once.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from gateway.clock import backoff
from gateway.domain.deletion import (
    CANCELLED, ENDED, INSTALL_ACCOUNTS, PENDING, DeletedSubscription, bought_again, kept_account_holds, late_purchases)
from gateway.domain.model import Subscription
from gateway.errors import GatewayError
from gateway.store.port import Store, Transaction

log = logging.getLogger("gateway.late_purchases")

#: How long a claimed late purchase is reserved for the worker that claimed it.
LEASE = timedelta(minutes=5)

Stop = Callable[[str, str], str]


def owner(tx: Transaction, subscription: Subscription) -> str | None:
    """The user the store account of ``subscription`` maps to, else the deleted user whose
    tombstone keeps it (``Transaction.keep_accounts``): a purchase under it that names
    nobody (a Stripe subscription of their customer from a Payment Link or the dashboard, a
    RevenueCat one the user made under an anonymous id before the deletion) is then theirs,
    a late purchase, not an ownerless one billing unseen; one made since under an anonymous
    id (``kept_account_holds``) is another user's, held without owner until an event names
    them. Read under the account's lock, which the deletion holds while it keeps the account."""
    source, account = subscription.snapshot.source, subscription.snapshot.account
    if not account:
        return None
    linked = tx.resolve(source, account)
    if linked is not None:
        return linked
    kept = tx.deleted_accounts([(source, account)]).get((source, account))
    # Only an app install's account asks when the user was deleted: no read for the others.
    if kept is None or source not in INSTALL_ACCOUNTS or kept_account_holds(subscription, tx.deleted_at(kept)):
        return kept
    log.warning("purchase under a deleted user's app install held without owner", extra={"fields": {
        "deleted_user": kept, "source": source, "product_id": subscription.snapshot.product_id}})
    return None


def note(tx: Transaction, held: dict[str, list[Subscription]], now: datetime,
         before: Mapping[tuple[str, str], Subscription | None]) -> list[DeletedSubscription]:
    """Record the late purchases of these deleted users (``held``: their subscriptions as
    ``tx`` holds them, under their locks; ``before``: as stored until ``tx`` changed them);
    returns them. One dealt with before and bought again since (``bought_again``) is
    recorded again."""
    if not held:
        return []
    known = tx.deleted_subscription_keys(sorted(held))
    again = {key for subscriptions in held.values() for s in subscriptions
             if (key := (s.snapshot.source, s.snapshot.key)) in known and bought_again(before.get(key), s, now)}
    found = [row for user, subscriptions in sorted(held.items())
             for row in late_purchases(subscriptions, known - again, now, user)]
    tx.note_deleted_subscriptions([row for row in found if (row.source, row.key) not in again])
    tx.note_bought_again([row for row in found if (row.source, row.key) in again])
    for row in found:
        log.warning("purchase after account deletion", extra={"fields": {
            "user": row.user_sub, "source": row.source, "product_id": row.product_id}})
    return found


def settle(store: Store, stop: Stop, row: DeletedSubscription, now: datetime, raising: bool = False) -> str:
    """Stop ``row``'s billing (``stop``; ``row`` claimed, under its lease) and write what it
    came to, which ends the lease; ``PENDING`` when the store could not answer (tried again
    later), and with ``raising`` the store's error raised once that is written."""
    failure = None
    try:
        outcome, error, retry_at = stop(row.source, row.key), None, None
    except GatewayError as exc:
        outcome, error, retry_at, failure = PENDING, exc.message, now + backoff(row.attempts + 1), exc
    with store.transaction() as tx:
        settled = tx.settle_late_purchase(row, outcome, row.attempts + 1, retry_at, error)
    # The user must cancel it in the store: a warning, for the operator to tell them.
    level = logging.INFO if outcome in (CANCELLED, ENDED, PENDING) else logging.WARNING
    log.log(level, "late purchase stopped" if outcome != PENDING else "late purchase not stopped yet", extra={"fields": {
        "user": row.user_sub, "source": row.source, "outcome": outcome, "attempts": row.attempts + 1,
        "written": settled, "error": error}})
    if failure is not None and raising:
        raise failure
    return outcome


class LatePurchases:
    """The worker's chore: stop the late purchases that are due, one claim at a time."""

    def __init__(self, store: Store, stop: Stop, clock: Callable[[], datetime]) -> None:
        self.store, self.stop, self.clock = store, stop, clock

    def run_once(self, limit: int = 100) -> int:
        """Stop up to ``limit`` due late purchases; returns how many were tried."""
        tried = 0
        for _ in range(limit):
            now = self.clock()
            with self.store.transaction() as tx:
                due = tx.claim_late_purchases(now, now + LEASE, 1)
            if not due:
                break
            settle(self.store, self.stop, due[0], now)
            tried += 1
        return tried


def settle_pending(store: Store, stop: Stop, user_sub: str, now: datetime) -> None:
    """Stop the user's pending late purchases now, due or not, but those the worker (or
    another deletion request) is stopping: claimed under the rows' locks, so the store is
    asked once. Raises a store's error once each is written (its lease ended, so asking
    again tries it again)."""
    with store.transaction() as tx:
        claimed = tx.claim_late_purchases_of(user_sub, now, now + LEASE)
    failures = []
    for row in claimed:
        try:
            settle(store, stop, row, now, raising=True)
        except GatewayError as exc:
            failures.append(exc)
    if failures:
        raise failures[0]
