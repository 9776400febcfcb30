"""The Google Play Developer API calls the gateway makes, behind a small port.

- purchases.subscriptionsv2.get:
  https://developers.google.com/android-publisher/api-ref/rest/v3/purchases.subscriptionsv2/get
- purchases.subscriptions.acknowledge:
  https://developers.google.com/android-publisher/api-ref/rest/v3/purchases.subscriptions/acknowledge
- purchases.voidedpurchases.list:
  https://developers.google.com/android-publisher/api-ref/rest/v3/purchases.voidedpurchases/list
- purchases.subscriptionsv2.cancel (account deletion):
  https://developers.google.com/android-publisher/api-ref/rest/v3/purchases.subscriptionsv2/cancel

Google answers 404 (``purchaseTokenNotFound``) for a token it does not know and 410
(``purchaseTokenNoLongerValid``) for one expired more than 60 days ago: ``UnknownPurchase``.
Every call is bounded (``TIMEOUT``) and never retried here: a Pub/Sub push waits on us
for its ack deadline, and a failed call defers the event to the gateway's retry worker.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol
from urllib.parse import quote

import requests

from gateway.errors import StoreApiError
from gateway.providers import wire

DEFAULT_BASE = "https://androidpublisher.googleapis.com"
TIMEOUT = (2.0, 4.0)  # connect, read
MAX_VOIDED_PAGES = 20


class PlayApiError(StoreApiError):
    """The Play Developer API did not answer, or answered with an error."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class UnknownPurchase(PlayApiError):
    """Google does not know the purchase token (404), or no longer (410)."""


class PlayApi(Protocol):
    def subscription(self, package: str, token: str) -> dict: ...

    def acknowledge_subscription(self, package: str, product_id: str, token: str) -> None: ...

    def voided_purchases(self, package: str, start_ms: int) -> list[dict]: ...

    def cancel_subscription(self, package: str, token: str) -> None: ...


class PlayHttpApi:
    def __init__(self, access_token: Callable[[], str], base: str | None = None,
                 session: requests.Session | None = None) -> None:
        self.access_token = access_token
        self.base = (base or DEFAULT_BASE).rstrip("/")
        self.session = session or requests.Session()

    def subscription(self, package: str, token: str) -> dict:
        return self._call("GET", f"/androidpublisher/v3/applications/{quote(package, safe='')}"
                                 f"/purchases/subscriptionsv2/tokens/{quote(token, safe='')}")

    def acknowledge_subscription(self, package: str, product_id: str, token: str) -> None:
        self._call("POST", f"/androidpublisher/v3/applications/{quote(package, safe='')}/purchases"
                           f"/subscriptions/{quote(product_id, safe='')}/tokens/{quote(token, safe='')}:acknowledge",
                   json={})

    def cancel_subscription(self, package: str, token: str) -> None:
        """Stop every future payment: ``DEVELOPER_REQUESTED_STOP_PAYMENTS``, which the user
        cannot restore (``USER_REQUESTED_STOP_RENEWALS`` may be undone, and an installment
        plan would still owe its commitment). The period paid for runs to its end on
        Google's side; nothing is refunded (that is ``subscriptionsv2.revoke``)."""
        self._call("POST", f"/androidpublisher/v3/applications/{quote(package, safe='')}"
                           f"/purchases/subscriptionsv2/tokens/{quote(token, safe='')}:cancel",
                   json={"cancellationContext": {"cancellationType": "DEVELOPER_REQUESTED_STOP_PAYMENTS"}})

    def voided_purchases(self, package: str, start_ms: int) -> list[dict]:
        """Subscription purchases voided since ``start_ms`` (Play keeps 30 days), every page."""
        path = f"/androidpublisher/v3/applications/{quote(package, safe='')}/purchases/voidedpurchases"
        params: dict = {"type": 1, "startTime": start_ms, "maxResults": 1000}
        found: list[dict] = []
        for _ in range(MAX_VOIDED_PAGES):
            answer = self._call("GET", path, params=params)
            items = answer.get("voidedPurchases")
            found += [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []
            page = (answer.get("tokenPagination") or {}).get("nextPageToken")
            if not isinstance(page, str) or not page:
                return found
            params = {"type": 1, "token": page, "maxResults": 1000}
        raise PlayApiError(f"Play API voidedpurchases: more than {MAX_VOIDED_PAGES} pages")

    def _call(self, method: str, path: str, **kwargs) -> dict:
        name = path.split("/purchases/", 1)[-1].split("/", 1)[0]  # never log a whole token
        headers = {"Authorization": f"Bearer {self.access_token()}"}
        try:
            response = self.session.request(method, self.base + path, headers=headers, timeout=TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            raise PlayApiError(f"Play API {name} did not answer ({type(exc).__name__})") from None
        if response.status_code in (404, 410):
            raise UnknownPurchase(f"Play API {name}: unknown purchase token ({response.status_code})",
                                  response.status_code)
        if response.status_code >= 400:
            raise PlayApiError(f"Play API {name} failed ({response.status_code}): {_reason(response)}",
                               response.status_code)
        try:
            return wire.loads(response.content) if response.content else {}  # deep JSON too: a ValueError
        except ValueError:
            raise PlayApiError(f"Play API {name} answered with a body that is not JSON") from None


def _reason(response: requests.Response) -> str:
    try:
        return " ".join(str(response.json()["error"]["message"]).split())[:300]
    except (ValueError, KeyError, TypeError):
        return response.reason or "error"
