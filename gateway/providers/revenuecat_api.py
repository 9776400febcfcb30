"""RevenueCat REST API v1, for reconciliation: ``GET /v1/subscribers/{app_user_id}``.

https://www.revenuecat.com/docs/api-v1 (Customer Info Model): ``subscriber.subscriptions``
maps each product id to its latest purchase (``expires_date``, ``refunded_at``,
``unsubscribe_detected_at``, ``billing_issues_detected_at``, ``grace_period_expires_date``,
``auto_resume_date``, ``is_sandbox``, ISO 8601 times); ``subscriber.entitlements`` maps each
entitlement to the ``product_identifier`` that grants it. The answer is the state as of the
request, so the snapshot is stamped with the time the request was made. A webhook's
subscription key is the store's original transaction id, which this answer does not carry:
the stored subscription is matched by its app user id and product id (see
``translation_of`` for when the answer is not applied).
"""
from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

import requests

from gateway.domain.catalog import Catalog
from gateway.domain.changes import Translation, ignored
from gateway.domain.model import Snapshot, Status, Subscription
from gateway.errors import StoreApiError
from gateway.providers import wire
from gateway.providers.revenuecat_events import SOURCE, is_anonymous

DEFAULT_BASE = "https://api.revenuecat.com"
TIMEOUT = (3.0, 10.0)  # connect, read


class RevenueCatApiError(StoreApiError):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RevenueCatApi:
    def __init__(self, api_key: str, base: str | None = None, session: requests.Session | None = None) -> None:
        self.api_key, self.base = api_key, (base or DEFAULT_BASE).rstrip("/")
        self.session = session or requests.Session()

    def subscriber(self, app_user_id: str) -> dict:
        url = f"{self.base}/v1/subscribers/{quote(app_user_id, safe='')}"
        headers = {"Authorization": f"Bearer {self.api_key}", "Accept": "application/json"}
        try:
            response = self.session.get(url, headers=headers, timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise RevenueCatApiError(f"RevenueCat did not answer ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise RevenueCatApiError(f"RevenueCat GET /v1/subscribers failed ({response.status_code})",
                                     response.status_code)
        try:
            answer = wire.loads(response.content)  # deep JSON too: a ValueError
        except ValueError:
            raise RevenueCatApiError("RevenueCat answered with a body that is not JSON") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("subscriber"), dict):
            raise RevenueCatApiError("RevenueCat's answer has no subscriber object")
        return answer["subscriber"]


def _time(value) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _state(found: dict, as_of: datetime) -> tuple[Status, datetime | None, bool]:
    """The same reading as the webhook's event types, from the purchase's dates."""
    expires_at, grace_end = _time(found.get("expires_date")), _time(found.get("grace_period_expires_date"))
    if found.get("refunded_at"):
        return Status.REVOKED, expires_at, False
    if expires_at is None:  # no end: nothing renews
        return Status.ACTIVE, None, False
    if as_of < expires_at:
        return Status.ACTIVE, expires_at, not found.get("unsubscribe_detected_at")
    if grace_end is not None and as_of < grace_end:
        return Status.GRACE_PERIOD, grace_end, True
    if found.get("billing_issues_detected_at") and not found.get("unsubscribe_detected_at"):
        return Status.BILLING_RETRY, expires_at, True
    if found.get("auto_resume_date"):
        return Status.PAUSED, expires_at, False
    return Status.EXPIRED, expires_at, False


def translation_of(subscriber: dict, current: Subscription, app_user_id: str, as_of: datetime,
                   catalog: Catalog, read_since: datetime | None = None) -> Translation:
    """The stored subscription as the subscriber answer shows it at ``as_of``; nothing
    when the answer may be about another purchase than the stored one.

    ``subscriptions[product]`` describes the app user's latest purchase of the product,
    which need not be the stored one (the key is the store's original transaction id, which
    the answer lacks). So a revoked subscription is left as it is (a refund is final for
    the purchase it refunded; RevenueCat's webhooks bring a reversal), as is one that ended
    before the answer's purchase began. ``current`` is the stored state as read at
    ``read_since``: one stored since, and other than the answer says, makes the answer
    a stale read under the subscription's lock (``reads.stale_read``), to be judged
    again on the state then stored.
    """
    held = current.snapshot
    if held.status is Status.REVOKED:
        return ignored("revoked: only a webhook undoes a refund, and the answer may be of a later purchase")
    found = (subscriber.get("subscriptions") or {}).get(held.product_id or "")
    if not isinstance(found, dict):
        elsewhere = held.product_id in (subscriber.get("non_subscriptions") or {})
        return ignored(f"RevenueCat lists {held.product_id!r} of this app user as a purchase that does not renew"
                       if elsewhere else f"RevenueCat shows no {held.product_id!r} subscription for this app user")
    began = _time(found.get("original_purchase_date"))
    if began and held.expires_at and began > held.expires_at:
        return ignored("the answer is about a purchase that began after this one ended")
    status, expires_at, will_renew = _state(found, as_of)
    granted = [name for name, e in (subscriber.get("entitlements") or {}).items()
               if isinstance(e, dict) and e.get("product_identifier") == held.product_id]
    # Name the user only while the owner is unknown: a transfer, not this read, moves ownership.
    named = next((i for i in (app_user_id, subscriber.get("original_app_user_id"))
                  if isinstance(i, str) and not is_anonymous(i)), None) if current.owner is None else None
    return Translation(snapshots=(Snapshot(
        source=SOURCE, key=held.key, as_of=as_of, status=status, product_id=held.product_id,
        expires_at=expires_at, will_renew=will_renew, user_sub=named, account=app_user_id,
        environment="SANDBOX" if found.get("is_sandbox") else "PRODUCTION",
        store=found["store"].upper()[:32] if isinstance(found.get("store"), str) else None,  # app_store: APP_STORE
        raw_status=f"SUBSCRIBER:{found.get('store') or 'unknown'}",
        entitlements=catalog.map_names(SOURCE, granted) if granted else held.entitlements,
        read_since=read_since,
    ),))


def build(settings, session: requests.Session | None = None) -> RevenueCatApi | None:
    if not settings.revenuecat_api_key:
        return None
    return RevenueCatApi(settings.revenuecat_api_key, settings.revenuecat_api_base, session)
