"""The Google Play Developer API calls the gateway makes, behind a small port.

- purchases.subscriptionsv2.get:
  https://developers.google.com/android-publisher/api-ref/rest/v3/purchases.subscriptionsv2/get
- purchases.subscriptions.acknowledge:
  https://developers.google.com/android-publisher/api-ref/rest/v3/purchases.subscriptions/acknowledge

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

DEFAULT_BASE = "https://androidpublisher.googleapis.com"
TIMEOUT = (2.0, 4.0)  # connect, read


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
            return response.json() if response.content else {}
        except ValueError:
            raise PlayApiError(f"Play API {name} answered with a body that is not JSON") from None


def _reason(response: requests.Response) -> str:
    try:
        return " ".join(str(response.json()["error"]["message"]).split())[:300]
    except (ValueError, KeyError, TypeError):
        return response.reason or "error"
