"""Account deletion at the user's request: ``DELETE /v1/me`` and ``flask users delete``.

1. The user's live subscriptions and Stripe customers are read; a user already deleted
   gets the first report, with the purchases made since (``late_purchases``: those still
   pending are stopped first).
2. Outside any transaction, the open Checkout Sessions of the customers and of the sessions
   handed to the user (``gateway.checkout`` records each) are expired, so none is paid once
   the account is gone (one completed meanwhile is a purchase like any other: found in step
   3 or after the deletion), and billing is stopped where the developer can:
   - Stripe: cancelled at once (``DELETE /v1/subscriptions/{id}``): a user who deletes
     their account expects not to be charged again, and keeps no access to use up;
   - Google Play: ``purchases.subscriptionsv2.cancel`` with
     ``DEVELOPER_REQUESTED_STOP_PAYMENTS``: no further payment, not restorable, no
     refund (``revoke`` would refund, a decision for support, not for a deletion);
   - App Store and RevenueCat: only the user can cancel there; reported as
     ``must_cancel_in_store`` with the store and the product.
   A store that does not answer (a 5xx, a timeout) or refuses the gateway's credentials
   (401, 403) is 503 and nothing is recorded: the deletion can simply be asked again. A store that refuses (a 4xx) is read back: a
   subscription found cancelled counts as cancelled (a retry after a partial failure),
   any other is reported for the user to cancel (``store_refused``).
3. One transaction, in the lock order of every writer (accounts, subscriptions, users,
   the feed's clock last). Under the user's lock, the user's subscriptions as committed
   are held against what step 2 stopped or reported (``domain.deletion.unstopped``): one
   stored since the read (a purchase delivered while a store's cancel was in flight), or a
   session handed out since (``domain.deletion.unexpired``), rolls the transaction back,
   and the deletion goes round again from step 1 for it, up to ``ROUNDS`` times, then
   answers 503. Then the tombstone and its report
   (``mark_deleted``; a concurrent deletion that committed first wins and its report is
   answered), the subscriptions it dealt with (one live later and not among them is a
   purchase made after the deletion: ``late_purchases``), personal values
   erased from the stored deliveries of the user's subscriptions and of deliveries
   naming the user or their Stripe customer (the ledger stays: ids, amounts, times,
   types, statuses), the identity links deleted (their store accounts kept with the
   tombstone), the entitlement rows removed with their ``entitlement.revoked`` events,
   then one ``user.deleted`` carrying the report. The subscriptions stay, owned by the
   sub: a late delivery for them, or naming the user or a kept account, finds the
   tombstone, grants nothing, links nothing to them and is erased (``erasure``); a
   purchase under a kept account that names nobody is theirs (``late_purchases.owner``).
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection
from datetime import datetime

from gateway.apply import append_changes
from gateway.domain import entitlement_events
from gateway import late_purchases
from gateway.domain.deletion import (
    CANCELLED, ENDED, REPORTED, SESSION_LIFETIME, DeletedSubscription, unexpired, unstopped, with_late)
from gateway.domain.entitlement_events import Cause
from gateway.domain.model import Subscription
from gateway.erasure import redact_deliveries
from gateway.errors import Unavailable
from gateway.providers.google_play_api import PlayApi, PlayApiError, UnknownPurchase
from gateway.providers.stripe_api import StripeApi, StripeApiError
from gateway.store.port import Store, StoreUnavailable, Transaction

log = logging.getLogger("gateway.accounts")

DELETION = Cause("deletion")
STORES = {"stripe": "Stripe", "apple": "App Store", "google": "Google Play", "revenuecat": "RevenueCat"}
MUST_CANCEL_IN_STORE, NOT_CONFIGURED, REFUSED = "must_cancel_in_store", "store_api_not_configured", "store_refused"
#: How often a deletion stops billing and tries to record itself while purchases of the
#: user are stored meanwhile (``PurchasedMeanwhile``), before answering 503.
ROUNDS = 3


@dataclasses.dataclass(frozen=True)
class StoreApis:
    """The store APIs a deletion cancels through; ``None`` where not configured."""

    stripe: StripeApi | None = None
    play: PlayApi | None = None
    package: str | None = None


class PurchasedMeanwhile(Exception):
    """Raised inside the deletion's transaction to roll it back: a live subscription of the
    user was stored, or a Checkout Session handed to them, after the read that billing was
    stopped and the sessions expired on."""


class AccountDeletion:
    def __init__(self, store: Store, apis: StoreApis, clock: Callable[[], datetime]) -> None:
        self.store, self.apis, self.clock = store, apis, clock

    def delete(self, user_sub: str) -> dict:
        """The deletion's report, ``{"cancelled": [...], "user_must_cancel": [...]}``; the
        first report again for a user already deleted. Raises ``Unavailable`` when the
        database or a store's API cannot answer now (nothing recorded: ask again)."""
        report: dict[str, list] = {"cancelled": [], "user_must_cancel": []}
        stopped: set[tuple[str, str]] = set()
        expired: set[str] = set()  # the Checkout Sessions handed out and no longer payable
        for round_ in range(1, ROUNDS + 1):
            earlier, held, customers, handed_out = self._read(user_sub)
            if earlier is not None:
                return self._answer_again(user_sub, earlier)
            live = sorted(unstopped(held, stopped, self.clock()), key=_order)
            self._expire_checkouts(sorted({*customers, *handed_out.values()}))
            expired.update(handed_out)  # each open one was listed, after it was recorded, and expired
            self._stop_billing(live, report)
            stopped.update(_keys(live))
            try:
                with self.store.transaction() as tx:
                    return erase(tx, user_sub, report, self.clock(), stopped, expired)
            except StoreUnavailable as exc:
                raise Unavailable("the deletion cannot be stored right now", code="store_unavailable") from exc
            except PurchasedMeanwhile:
                log.info("purchased or checkout opened while deleting", extra={"fields": {"user": user_sub, "round": round_}})
        raise Unavailable("purchases of the account are being stored; try again", code="account_changing")

    def _read(self, user_sub: str) -> tuple[dict | None, list[Subscription], list[str], dict[str, str]]:
        """The earlier deletion's report, or the user's subscriptions, Stripe customers and
        the Checkout Sessions handed out that may still be open (id -> customer)."""
        try:
            with self.store.transaction(readonly=True) as tx:
                earlier = tx.deletion_report(user_sub)
                if earlier is not None:
                    return earlier, [], [], {}
                customers = [account for source, account in tx.identities_of(user_sub) if source == "stripe"]
                handed_out = tx.checkout_sessions_of(user_sub, self.clock() - SESSION_LIFETIME)
                return None, tx.subscriptions_of_users([user_sub])[user_sub], customers, handed_out
        except StoreUnavailable as exc:
            raise Unavailable("the account cannot be read right now", code="store_unavailable") from exc

    def _answer_again(self, user_sub: str, report: dict) -> dict:
        """The first ``report`` with the purchases made since (``late_purchases``), those
        still pending stopped first."""
        try:
            late_purchases.settle_pending(self.store, self.stop, user_sub, self.clock())
            with self.store.transaction(readonly=True) as tx:
                rows = tx.deleted_subscriptions_of(user_sub)
        except StoreUnavailable as exc:
            raise Unavailable("the account cannot be read right now", code="store_unavailable") from exc
        except Unavailable as exc:  # the account is deleted; a purchase made since still bills
            raise Unavailable("the account is deleted, but a purchase made since cannot be cancelled right now; "
                              "try again", code=exc.code) from exc
        return with_late(report, rows, STORES)

    def _expire_checkouts(self, customers: list[str]) -> None:
        """Expire the customers' open Checkout Sessions, so none is paid once the account is
        gone (https://docs.stripe.com/api/checkout/sessions/expire): those of the user's
        customers and of every session handed out (``gateway.checkout``). One completed or
        expired meanwhile is refused, and left: its subscription, if any, is stopped like
        any other (``unstopped`` here, ``late_purchases`` after the deletion)."""
        if not self.apis.stripe:
            return
        for customer in customers:
            try:
                sessions = self.apis.stripe.open_checkout_sessions(customer)
            except StripeApiError as exc:
                _raise_unless_refused(exc.refused and exc.status not in CREDENTIALS, "Stripe")
                continue  # a customer Stripe no longer knows has no session to pay
            for session in sessions:
                try:
                    self.apis.stripe.expire_checkout_session(session["id"])
                except StripeApiError as exc:
                    _raise_unless_refused(exc.refused and exc.status not in CREDENTIALS, "Stripe")
                else:
                    log.info("checkout expired", extra={"fields": {"customer": customer, "session": session["id"]}})

    def _stop_billing(self, live: list[Subscription], report: dict) -> None:
        """Stop billing ``live`` where the store lets the gateway, and add each to ``report``."""
        for subscription in live:
            snapshot = subscription.snapshot
            item = {"source": snapshot.source, "store": STORES.get(snapshot.source, snapshot.source),
                    "product_id": snapshot.product_id}
            outcome = self.stop(snapshot.source, snapshot.key)
            if outcome == CANCELLED:
                report["cancelled"].append(item)
            elif outcome != ENDED:
                report["user_must_cancel"].append({**item, "reason": outcome})

    def stop(self, source: str, key: str) -> str:
        """Stop billing one subscription where the store lets the gateway: what it came to
        (``CANCELLED``, ``ENDED``, or the reason the user must cancel it). Raises
        ``Unavailable`` when the store cannot answer now."""
        if source == "stripe":
            return self._cancel_stripe(key) if self.apis.stripe else NOT_CONFIGURED
        if source == "google":
            return self._cancel_play(key) if self.apis.play and self.apis.package else NOT_CONFIGURED
        return MUST_CANCEL_IN_STORE

    def _cancel_stripe(self, key: str) -> str:
        # No Idempotency-Key: Stripe replays a key's first answer, a 500 included, for 24
        # hours, which would make the retry after an outage fail the same way. A repeated
        # cancel is refused instead, and the read-back below tells it from a real refusal.
        try:
            self.apis.stripe.cancel_subscription(key)
            return CANCELLED
        except StripeApiError as exc:
            _raise_unless_refused(exc.refused and exc.status not in CREDENTIALS, "Stripe")
        try:
            return CANCELLED if self.apis.stripe.subscription(key).get("status") == "canceled" else REFUSED
        except StripeApiError as exc:
            _raise_unless_refused(exc.refused and exc.status not in CREDENTIALS, "Stripe")
            return REFUSED

    def _cancel_play(self, key: str) -> str:
        try:
            self.apis.play.cancel_subscription(self.apis.package, key)
            return CANCELLED
        except UnknownPurchase:
            return ENDED  # Google no longer knows it (expired over 60 days ago): nothing bills
        except PlayApiError as exc:
            _raise_unless_refused(_refused(exc.status), "Google Play")
        try:
            state = self.apis.play.subscription(self.apis.package, key).get("subscriptionState")
        except PlayApiError as exc:
            _raise_unless_refused(_refused(exc.status), "Google Play")
            return REFUSED
        return CANCELLED if state in ("SUBSCRIPTION_STATE_CANCELED", "SUBSCRIPTION_STATE_EXPIRED") else REFUSED


#: A store refusing the gateway's credentials (a rolled key, a service account without
#: access) says nothing of the subscription, which may go on billing: not a refusal the user
#: can act on, but an outage of ours. Nothing is deleted; asked again once they are fixed.
CREDENTIALS = frozenset({401, 403})


def _refused(status: int | None) -> bool:
    return status is not None and 400 <= status < 500 and status not in (429, *CREDENTIALS)


def _raise_unless_refused(refused: bool, store: str) -> None:
    if not refused:
        raise Unavailable(f"{store} cannot cancel the subscription right now; nothing was deleted, try again",
                          code="store_api_unavailable")


def _order(subscription: Subscription) -> tuple:
    return subscription.snapshot.source, subscription.snapshot.product_id or "", subscription.snapshot.key


def erase(tx: Transaction, user_sub: str, report: dict, now: datetime, stopped: Collection[tuple[str, str]],
          expired: Collection[str] = ()) -> dict:
    """Record the deletion in ``tx``; returns the report that holds (an earlier one wins).
    Raises ``PurchasedMeanwhile`` when a live subscription of the user, as committed under
    the user's lock, is not among ``stopped``, the (source, key) of those ``report`` covers,
    or a Checkout Session handed to the user is not among ``expired``."""
    accounts = tx.identities_of(user_sub)
    tx.lock_accounts(accounts)
    tx.lock_subscriptions(_keys(tx.subscriptions_of_users([user_sub])[user_sub]))
    tx.lock_users([user_sub])
    earlier = tx.mark_deleted(user_sub, report, now)
    if earlier is not None:
        return earlier
    held = tx.subscriptions_of_users([user_sub])[user_sub]  # read again: one stored meanwhile is here now
    if unstopped(held, stopped, now) or unexpired(tx.checkout_sessions_of(user_sub, now - SESSION_LIFETIME), expired):
        raise PurchasedMeanwhile(user_sub)
    # What the deletion dealt with; one live later and not among them was bought since.
    tx.note_deleted_subscriptions([DeletedSubscription(s.snapshot.source, s.snapshot.key, user_sub,
                                                       s.snapshot.product_id, REPORTED, now)
                                   for s in held if (s.snapshot.source, s.snapshot.key) in stopped])
    keys = _keys(held)
    # Read again under the user's lock: an account a delivery linked while this transaction
    # waited for the locks it holds (after the read above) is here now, and kept too.
    accounts = tx.identities_of(user_sub)
    names = [user_sub] + [account for source, account in accounts if source == "stripe"]
    redact_deliveries(tx, keys, names)
    tx.keep_accounts(user_sub, accounts)  # a later delivery naming one is still known (``erasure``)
    tx.unlink_user(user_sub)
    tx.forget_checkout_sessions(user_sub)
    before, _ = tx.read_entitlements([user_sub])
    tx.replace_entitlements_of({user_sub: []}, now)
    append_changes(tx, {user_sub: entitlement_events.changed(before[user_sub], [])}, now, {user_sub: DELETION})
    last, _ = tx.take_feed_positions(1)  # the clock is already held when revocations were appended
    deleted = entitlement_events.user_deleted(user_sub, report, now)
    tx.append_feed([dataclasses.replace(deleted, position=last + 1)])
    return report


def _keys(held: list[Subscription]) -> list[tuple[str, str]]:
    return sorted((s.snapshot.source, s.snapshot.key) for s in held)


def build(settings, store: Store, clock: Callable[[], datetime]) -> AccountDeletion:
    """The store APIs configured in ``settings``; a store without them is reported for the
    user to cancel (``store_api_not_configured``)."""
    from gateway.providers.google_play_api import PlayHttpApi
    from gateway.providers.google_play_credentials import access_token_source
    from gateway.providers.stripe_api import StripeHttpApi

    stripe = StripeHttpApi(settings.stripe_api_key, settings.stripe_api_base) if settings.stripe_api_key else None
    play_configured = settings.google_service_account_json or settings.google_play_access_token
    play = PlayHttpApi(access_token_source(settings), settings.google_play_api_base) if play_configured else None
    return AccountDeletion(store, StoreApis(stripe, play, settings.google_package_name), clock)
