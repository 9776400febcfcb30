"""The App Store Server API, through Apple's own client (app-store-server-library).

``AppStoreServerAPIClient`` builds the requests, parses the answers into Apple's models and
reports Apple's error codes. Three things are changed here, each by overriding one hook of
the library's (pinned in requirements.txt; tests/unit/test_apple_api.py runs it against a
local fake that checks the token as Apple documents it):

- where it sends: ``base_url`` (APPLE_API_BASE, a local fake in tests and the demo); the
  library knows only Apple's two hosts;
- how: on one ``requests`` session with a bounded timeout (the library waits 30 s), and a
  transport failure is an ``AppleApiError`` (a ``StoreApiError``: the caller counts it as
  failed and retries another day) rather than a bare ``requests`` exception;
- the bearer token: the library signs a new one per request without ``iat`` or ``typ``;
  this one carries every claim "Generating JSON Web Tokens for API requests" lists (ES256,
  ``kid``, ``typ: JWT``; ``iss``, ``iat``, ``exp`` at most 60 minutes later, ``aud``, ``bid``)
  and is reused until a minute before it expires.
https://developer.apple.com/documentation/appstoreserverapi/generating-json-web-tokens-for-api-requests
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import jwt
import requests
from appstoreserverlibrary.api_client import APIException, AppStoreServerAPIClient
from appstoreserverlibrary.models.Environment import Environment
from appstoreserverlibrary.models.NotificationHistoryRequest import NotificationHistoryRequest
from appstoreserverlibrary.models.NotificationHistoryResponse import NotificationHistoryResponse
from appstoreserverlibrary.models.StatusResponse import StatusResponse

from gateway.errors import StoreApiError

BASE_URLS = {"Production": "https://api.storekit.apple.com", "Sandbox": "https://api.storekit-sandbox.apple.com"}
AUDIENCE = "appstoreconnect-v1"
TOKEN_LIFETIME = 20 * 60  # Apple refuses tokens that live longer than 60 minutes
_RENEW_BEFORE = 60


class AppleApiError(StoreApiError):
    def __init__(self, message: str, status: int | None = None, error_code: int | None = None) -> None:
        super().__init__(message)
        self.status, self.error_code = status, error_code


class AppStoreServerApi(AppStoreServerAPIClient):
    def __init__(self, *, issuer_id: str, key_id: str, private_key: str, bundle_id: str, base_url: str,
                 session: requests.Session | None = None, clock: Callable[[], float] = time.time,
                 timeout: float = 10.0) -> None:
        environment = Environment.SANDBOX if base_url.rstrip("/") == BASE_URLS["Sandbox"] else Environment.PRODUCTION
        super().__init__(private_key.encode(), key_id, issuer_id, bundle_id, environment)
        self.issuer_id, self.key_id, self.bundle_id = issuer_id, key_id, bundle_id
        self.private_key, self.base_url = private_key, base_url.rstrip("/")
        self.session = session or requests.Session()
        self.clock, self.timeout = clock, timeout
        self._token: tuple[str, float] | None = None
        self._lock = threading.Lock()

    def subscription_statuses(self, transaction_id: str) -> StatusResponse:
        """Get All Subscription Statuses: ``GET /inApps/v1/subscriptions/{transactionId}``.
        https://developer.apple.com/documentation/appstoreserverapi/get-all-subscription-statuses"""
        if not transaction_id.isdigit():  # transaction ids are numeric; never let one change the path
            raise ValueError(f"not an App Store transaction id: {transaction_id!r}")
        return self._answer(self.get_all_subscription_statuses, transaction_id)

    def notification_history(self, start_ms: int, end_ms: int, pagination_token: str | None = None, *,
                             only_failures: bool = False) -> NotificationHistoryResponse:
        """Get Notification History: ``POST /inApps/v1/notifications/history`` (pages of 20).
        https://developer.apple.com/documentation/appstoreserverapi/get-notification-history"""
        request = NotificationHistoryRequest(startDate=start_ms, endDate=end_ms,
                                             onlyFailures=True if only_failures else None)
        return self._answer(self.get_notification_history, pagination_token, request)

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

    # The library's hooks.
    def _generate_token(self) -> str:
        return self.token()

    def _get_full_url(self, path: str) -> str:
        return self.base_url + path

    def _execute_request(self, method, url, params, headers, json, data) -> requests.Response:
        try:
            return self.session.request(method, url, params=params, headers=headers, json=json, data=data,
                                        timeout=self.timeout)
        except requests.RequestException as exc:
            raise AppleApiError(f"App Store Server API unreachable: {type(exc).__name__}") from exc

    @staticmethod
    def _answer(call, *args):
        try:
            return call(*args)
        except APIException as exc:
            raise AppleApiError(f"App Store Server API {exc.http_status_code}: {exc.error_message or 'error'}",
                                exc.http_status_code, exc.raw_api_error) from None
        except (ValueError, TypeError, KeyError, RecursionError) as exc:  # an answer not of Apple's shape
            raise AppleApiError(f"App Store Server API answered an unreadable body: {exc}") from None


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
