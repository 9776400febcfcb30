"""Google Play reconciliation: purchases.subscriptionsv2.get per stored subscription, and
purchases.voidedpurchases.list since the last complete read, to apply the voids (refunds,
chargebacks) whose notification came before Play listed them, or never came.

- https://developers.google.com/android-publisher/api-ref/rest/v3/purchases.voidedpurchases/list
  and https://developers.google.com/android-publisher/voided-purchases: ``type=1`` lists
  subscription orders beside one-time ones (the default, 0, one-time ones only);
  ``startTime`` filters on when Play recorded the void, not on ``voidedTimeMillis``, and
  may not be older than 30 days; up to 1000 a page, ``tokenPagination.nextPageToken``
  for the next; 6000 queries a day and 30 in any 30 seconds, per package.
- A listed void is applied through the notification's own path
  (``GooglePlayNotifications.void``: the period that order paid, read as Play shows it
  now, is revoked as ``voided:<orderId>``; an older renewal's order leaves the current
  period standing), each in a transaction of its own. A subscription that already holds
  ``voided:<orderId>`` is not read again: a void notified and listed is applied once.
- The list names no product type: a token subscriptionsv2 does not know (404, 410) or
  refuses (400, a one-time purchase) is skipped.
- The cursor (the ``reconcile_cursors`` row ``google.voids``) is the moment just before
  the last read that listed every page and applied every void. The next read starts
  ``OVERLAP`` before it, for a void Play recorded before that moment and listed after;
  any failure leaves it where it was, and the next run reads the same voids again.
"""
from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

from gateway.apply import apply_translation, reading_again
from gateway.domain.changes import ignored
from gateway.domain.entitlement_events import Cause
from gateway.domain.model import Subscription
from gateway.jobs.reconcile_report import state_of
from gateway.providers import google_play_state as play_state
from gateway.providers.google_play_api import PlayApiError, PlayHttpApi, UnknownPurchase
from gateway.providers.google_play_credentials import access_token_source
from gateway.store.port import StoreRefused, StoreUnavailable

log = logging.getLogger("gateway.reconcile")

SOURCE = play_state.SOURCE
#: The cursor's row in ``reconcile_cursors``.
VOIDS_CURSOR = "google.voids"
#: Read again on each run: a void recorded just before the last read may be listed after it.
OVERLAP = timedelta(days=1)
#: How far back Play lists voids, with a margin for the clocks: asking for more is refused.
KEPT = timedelta(days=30) - timedelta(minutes=5)


class GoogleChecker:
    """purchases.subscriptionsv2.get, then purchases.subscriptions.acknowledge when Play
    says the paid purchase is still unacknowledged (Google refunds it after three days);
    and the voids Play lists (``recover``)."""

    source = SOURCE
    recovers = "voids"  # the label of what ``recover`` counts, in the run's report

    def __init__(self, provider, api: PlayHttpApi, clock: Callable[[], datetime]) -> None:
        self.provider, self.api, self.clock = provider, api, clock
        self.acknowledged, self.lock = 0, threading.Lock()

    def fetch(self, current, lookup, dry_run):
        # Stamped as a notification's read is, when the answer came, with the moment it was
        # asked (read_since): against a notification's read in flight together, which of
        # the two Play answered last is judged under the lock (reads.stale_read), and the
        # older one is read again. Stamped when asked, a newer answer lost to an older
        # notification's that arrived later.
        token, asked = current.snapshot.key, self.clock()
        try:
            purchase = self.api.subscription(self.provider.package, token)
        except UnknownPurchase as exc:  # Google forgets tokens long expired: nothing to repair
            return ignored(str(exc))
        as_of = self.clock()
        if play_state.needs_acknowledgement(purchase) and not dry_run:
            product = play_state.acknowledged_product(purchase)
            if product is None:
                raise PlayApiError("the purchase awaits acknowledgement but names no product")
            self.api.acknowledge_subscription(self.provider.package, product, token)
            with self.lock:
                self.acknowledged += 1
        return self.provider.translation(token, purchase, as_of, lookup, asked)

    def recover(self, ingest, since: timedelta, now: datetime) -> Counter:
        """Apply every subscription void Play listed since the last complete read; the
        outcomes counted ("failed" ones keep the cursor where it was)."""
        start = self._start(ingest.store, now)
        asked = self.clock()
        listed = self.api.voided_purchases(self.provider.package, int(start.timestamp() * 1000))
        outcomes = Counter(self._void(ingest, item) for item in listed)
        if not outcomes["failed"]:
            self._save(ingest.store, asked)
        return outcomes

    def _start(self, store, now: datetime) -> datetime:
        with store.transaction(readonly=True) as tx:
            saved = tx.reconcile_cursor(VOIDS_CURSOR)
        try:
            start = datetime.fromisoformat(saved) - OVERLAP if saved else now - KEPT
        except ValueError:
            log.warning("unreadable voids cursor: reading all Play keeps", extra={"fields": {"cursor": saved[:40]}})
            start = now - KEPT
        if start < now - KEPT:
            log.warning("voids recorded before Play's 30 days cannot be read: reconcile ran too seldom",
                        extra={"fields": {"since": start.isoformat()}})
        return max(start, now - KEPT)

    def _save(self, store, asked: datetime) -> None:
        try:
            with store.transaction() as tx:
                tx.move_reconcile_cursor(VOIDS_CURSOR, asked.isoformat(), self.clock())
        except (StoreUnavailable, StoreRefused) as exc:  # the next run reads these again: harmless
            log.warning("voids cursor not saved", extra={"fields": {"error": str(exc)}})

    def _void(self, ingest, item: dict) -> str:
        """One listed void, applied: its outcome."""
        token, order = item.get("purchaseToken"), item.get("orderId")
        if not (isinstance(token, str) and token and isinstance(order, str) and order):
            return "malformed"
        if _holds(ingest.lookup.subscription(SOURCE, token), order):
            return "held"
        try:
            return reading_again(lambda: self._apply(ingest, token, order))
        except PlayApiError as exc:
            if exc.status == 400:  # a one-time purchase's token: not a subscription
                return "not a subscription"
            error = exc
        except Exception as exc:  # counted and logged; the cursor stays for the next run
            error = exc
        log.warning("void not applied", extra={"fields": {"order": order, "error": str(error)[:300]}})
        return "failed"

    def _apply(self, ingest, token: str, order: str) -> str:
        translation = self.provider.void(token, order, ingest.lookup)
        if translation.is_empty:
            return "not a subscription"  # Play does not know the token (404, 410)
        with ingest.store.transaction() as tx:
            before = state_of(tx.get_subscription(SOURCE, token))
            apply_translation(tx, translation, ingest.catalog, self.clock(), cause=Cause("reconcile", SOURCE))
            return "unchanged" if state_of(tx.get_subscription(SOURCE, token)) == before else "applied"


def _holds(current: Subscription | None, order: str) -> bool:
    """Whether the subscription already holds the void of ``order``."""
    cause = f"voided:{order}"
    return current is not None and any(taken[0] == cause for taken in current.revocations.taken)


def google_checker(settings, provider, session, clock):
    if not hasattr(provider, "translation"):
        return "Google Play is not configured (GOOGLE_PACKAGE_NAME, GOOGLE_PUBSUB_*)"
    if not (settings.google_service_account_json or settings.google_play_access_token):
        return "no Play Developer API credentials (GOOGLE_SERVICE_ACCOUNT_JSON)"
    api = PlayHttpApi(access_token_source(settings), settings.google_play_api_base, session=session)
    return GoogleChecker(provider, api, clock)
