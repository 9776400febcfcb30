"""App Store reconciliation: Get All Subscription Statuses per stored subscription, and
Get Notification History (failures only) to recover notifications that never reached us.

- https://developer.apple.com/documentation/appstoreserverapi/get-all-subscription-statuses
  answers, per subscription group, the ``lastTransactions`` with their signed transaction
  and renewal info: verified here exactly as a notification's are.
- https://developer.apple.com/documentation/appstoreserverapi/get-notification-history
  with ``onlyFailures`` lists the notifications Apple could not deliver. Each recovered
  ``signedPayload`` goes through the webhook's own path (verify, record under its
  notificationUUID, apply), so a later real redelivery is a duplicate, and vice versa.
"""
from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta

from appstoreserverlibrary.models.LastTransactionsItem import LastTransactionsItem
from appstoreserverlibrary.models.StatusResponse import StatusResponse

from gateway.domain.changes import ignored
from gateway.providers.apple_api import BASE_URLS, AppleApiError, AppStoreServerApi, read_private_key
from gateway.providers.apple_state import store_status, translate_transaction

MAX_PAGES = 50  # 20 notifications a page; a bounded run even after a long outage


class AppleChecker:
    source = "apple"
    recovers = "history"  # the label of what ``recover`` counts, in the run's report

    def __init__(self, provider, settings, catalog, session, clock) -> None:
        self.provider, self.settings, self.catalog, self.clock = provider, settings, catalog, clock
        self.session = session
        self.apis: dict[str, AppStoreServerApi] = {}

    def api(self, environment: str | None) -> AppStoreServerApi:
        base = self.settings.apple_api_base or BASE_URLS.get(environment or "", BASE_URLS["Production"])
        if base not in self.apis:
            s = self.settings
            self.apis[base] = AppStoreServerApi(
                issuer_id=s.apple_issuer_id, key_id=s.apple_key_id, bundle_id=s.apple_bundle_id,
                private_key=read_private_key(s.apple_private_key), base_url=base, session=self.session)
        return self.apis[base]

    def fetch(self, current, lookup, dry_run):
        key, environment = current.snapshot.key, current.snapshot.environment
        if current.snapshot.expires_at is None:  # a non-consumable: the statuses call knows only subscriptions
            return ignored("a purchase without an end: Apple's subscription statuses do not cover it")
        as_of = self.clock()  # taken before asking: a notification of a change made meanwhile is newer
        answer = self.api(environment).subscription_statuses(key)
        item = _last_transaction(answer, key)
        if item is None:
            raise AppleApiError(f"the statuses answer has no transaction of {key}")
        verifier = self.provider.verifier
        transaction = verifier.transaction(item.signedTransactionInfo, environment)
        signed_renewal = item.signedRenewalInfo
        renewal = verifier.renewal(signed_renewal, environment) if isinstance(signed_renewal, str) else None
        if transaction.get("originalTransactionId") != key:
            return ignored("the statuses answer is for another subscription")
        return translate_transaction(transaction, renewal, as_of, f"STATUS:{item.rawStatus}", self.catalog,
                                     status=store_status(item.rawStatus), grace=self.provider.grace)

    def recover(self, ingest, since: timedelta, now: datetime) -> Counter:
        """Feed every undelivered notification of the window through the webhook path."""
        outcomes: Counter = Counter()
        environments = [e for e in self.settings.apple_environments if e in BASE_URLS]
        for api in {id(a): a for a in (self.api(e) for e in environments)}.values():
            start, end = int((now - since).timestamp() * 1000), int(now.timestamp() * 1000)
            token = None
            for _ in range(MAX_PAGES):
                page = api.notification_history(start, end, token, only_failures=True)
                for item in page.notificationHistory or []:
                    outcomes[self._deliver(ingest, item.signedPayload)] += 1
                token = page.paginationToken
                if not (page.hasMore and token):
                    break
        return outcomes

    def _deliver(self, ingest, signed_payload: str | None) -> str:
        body = json.dumps({"signedPayload": signed_payload}).encode()
        try:
            return ingest.receive(self.provider, body, {})
        except Exception as exc:  # unverifiable or malformed: counted, never applied
            return f"refused ({getattr(exc, 'code', type(exc).__name__)})"


def _last_transaction(answer: StatusResponse, key: str) -> LastTransactionsItem | None:
    items = [t for group in answer.data or [] for t in group.lastTransactions or []
             if isinstance(t.signedTransactionInfo, str)]
    return next((t for t in items if t.originalTransactionId == key), items[0] if len(items) == 1 else None)


def apple_checker(settings, provider, catalog, session, clock):
    if not hasattr(provider, "verifier"):
        return "the App Store is not configured (APPLE_BUNDLE_ID)"
    if not (settings.apple_issuer_id and settings.apple_key_id and settings.apple_private_key):
        return "no App Store Server API credentials (APPLE_ISSUER_ID, APPLE_KEY_ID, APPLE_PRIVATE_KEY)"
    return AppleChecker(provider, settings, catalog, session, clock)
