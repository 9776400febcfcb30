"""A small App Store Server API client (the port a reconciliation job uses).

Apple's own ``AppStoreServerAPIClient`` picks its base URL from the environment alone,
with no public way to point it at a local fake (APPLE_API_BASE), so requests are made
here and the bearer token is signed exactly as "Generating JSON Web Tokens for API
requests" documents (https://developer.apple.com/documentation/appstoreserverapi/generating-json-web-tokens-for-api-requests):
ES256, header ``kid`` and ``typ: JWT``; claims ``iss`` (issuer id), ``iat``, ``exp`` at most
60 minutes later, ``aud: appstoreconnect-v1`` and ``bid`` (bundle id).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import jwt
import requests

from gateway.errors import StoreApiError
from gateway.providers import wire

BASE_URLS = {"Production": "https://api.storekit.apple.com", "Sandbox": "https://api.storekit-sandbox.apple.com"}
AUDIENCE = "appstoreconnect-v1"
TOKEN_LIFETIME = 20 * 60  # Apple refuses tokens that live longer than 60 minutes
_RENEW_BEFORE = 60


class AppleApiError(StoreApiError):
    def __init__(self, message: str, status: int | None = None, error_code: int | None = None) -> None:
        super().__init__(message)
        self.status, self.error_code = status, error_code


class AppStoreServerApi:
    def __init__(self, *, issuer_id: str, key_id: str, private_key: str, bundle_id: str, base_url: str,
                 session: requests.Session | None = None, clock: Callable[[], float] = time.time,
                 timeout: float = 10.0) -> None:
        self.issuer_id, self.key_id, self.bundle_id = issuer_id, key_id, bundle_id
        self.private_key = private_key
        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()
        self.clock, self.timeout = clock, timeout
        self._token: tuple[str, float] | None = None
        self._lock = threading.Lock()

    def token(self) -> str:
        """The bearer token, reused until a minute before it expires."""
        with self._lock:
            now = int(self.clock())
            if self._token is None or self._token[1] - _RENEW_BEFORE <= now:
                claims = {"iss": self.issuer_id, "iat": now, "exp": now + TOKEN_LIFETIME,
                          "aud": AUDIENCE, "bid": self.bundle_id}
                token = jwt.encode(claims, self.private_key, algorithm="ES256",
                                   headers={"kid": self.key_id, "typ": "JWT"})
                self._token = (token, now + TOKEN_LIFETIME)
            return self._token[0]

    def subscription_statuses(self, transaction_id: str, statuses: tuple[int, ...] = ()) -> dict:
        """Get All Subscription Statuses: ``GET /inApps/v1/subscriptions/{transactionId}``.
        https://developer.apple.com/documentation/appstoreserverapi/get-all-subscription-statuses"""
        params = [("status", str(s)) for s in statuses]
        return self._request("GET", f"/inApps/v1/subscriptions/{_segment(transaction_id)}", params=params)

    def notification_history(self, start_ms: int, end_ms: int, pagination_token: str | None = None,
                             **filters) -> dict:
        """Get Notification History: ``POST /inApps/v1/notifications/history`` (pages of 20).
        Filters: ``notificationType``, ``notificationSubtype``, ``transactionId``,
        ``onlyFailures``. https://developer.apple.com/documentation/appstoreserverapi/get-notification-history"""
        body = {"startDate": start_ms, "endDate": end_ms, **filters}
        params = [("paginationToken", pagination_token)] if pagination_token else []
        return self._request("POST", "/inApps/v1/notifications/history", params=params, json=body)

    def _request(self, method: str, path: str, **kwargs) -> dict:
        headers = {"Authorization": f"Bearer {self.token()}", "Accept": "application/json"}
        try:
            response = self.session.request(method, self.base_url + path, headers=headers,
                                            timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise AppleApiError(f"App Store Server API unreachable: {exc}") from exc
        if response.status_code != 200:
            raise _error(response)
        try:
            return wire.loads(response.content)  # deep JSON too: a ValueError
        except ValueError as exc:
            raise AppleApiError("App Store Server API answered non-JSON", response.status_code) from exc


def _segment(value: str) -> str:
    if not value.isdigit():  # transaction ids are numeric; never let one change the path
        raise ValueError(f"not an App Store transaction id: {value!r}")
    return value


def _error(response: requests.Response) -> AppleApiError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    code = body.get("errorCode") if isinstance(body, dict) else None
    message = body.get("errorMessage") if isinstance(body, dict) else None
    return AppleApiError(f"App Store Server API {response.status_code}: {message or response.reason}",
                         response.status_code, code)


def read_private_key(value: str) -> str:
    """APPLE_PRIVATE_KEY holds the .p8 key's PEM text, or the path of the file."""
    return value if "-----BEGIN" in value else Path(value).read_text(encoding="utf-8")


def build_api(settings, environment: str = "Production") -> AppStoreServerApi | None:
    """The client for ``environment``, or ``None`` when the API credentials are not set."""
    if not (settings.apple_issuer_id and settings.apple_key_id and settings.apple_private_key
            and settings.apple_bundle_id):
        return None
    return AppStoreServerApi(
        issuer_id=settings.apple_issuer_id, key_id=settings.apple_key_id,
        private_key=read_private_key(settings.apple_private_key), bundle_id=settings.apple_bundle_id,
        base_url=settings.apple_api_base or BASE_URLS[environment])
