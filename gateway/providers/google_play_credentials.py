"""Credentials for the Play Developer API: a service-account key, or a static token.

A service account's access token comes from the OAuth 2.0 JWT-bearer grant
(https://developers.google.com/identity/protocols/oauth2/service-account#httprest)
with the ``androidpublisher`` scope; google-auth makes the grant and we keep the token
until it expires. ``token_uri`` in the key file says where the grant goes (a local fake
in tests).
"""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable

import requests
from google.auth import exceptions as google_exceptions
from google.auth.transport.requests import Request as GoogleRequest
from google.oauth2 import service_account

from gateway.config import ConfigError
from gateway.providers.google_play_api import TIMEOUT, PlayApiError

SCOPE = "https://www.googleapis.com/auth/androidpublisher"


class _NoRetryRequest(GoogleRequest):
    """google-auth's transport, bounded: google-auth retries a failing token endpoint
    three times with sleeps in between, which would overrun a push's ack deadline; our
    retry worker retries later instead."""

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
        response = super().__call__(url, method, body, headers, timeout=TIMEOUT, **kwargs)
        if response.status == 429 or response.status >= 500:
            raise google_exceptions.TransportError(f"the token endpoint answered {response.status}")
        return response


class ServiceAccountToken:
    """An OAuth access token for the service account, refreshed when it expires."""

    def __init__(self, credentials: service_account.Credentials, session: requests.Session | None = None) -> None:
        self.credentials, self.request = credentials, _NoRetryRequest(session or requests.Session())
        self.lock = threading.Lock()

    def __call__(self) -> str:
        with self.lock:
            if not self.credentials.valid:
                try:
                    self.credentials.refresh(self.request)
                except google_exceptions.GoogleAuthError as exc:
                    raise PlayApiError(f"no access token for the Play API: {type(exc).__name__}: "
                                       f"{str(exc)[:200]}") from None
            return self.credentials.token


def _static(token: str) -> Callable[[], str]:
    return lambda: token


def _missing() -> str:
    raise PlayApiError("no Play API credentials: set GOOGLE_SERVICE_ACCOUNT_JSON or GOOGLE_PLAY_ACCESS_TOKEN")


def access_token_source(settings) -> Callable[[], str]:
    """The service account when configured, else the static token, else a refusal."""
    if settings.google_service_account_json:
        info = _service_account_info(settings.google_service_account_json)
        try:
            credentials = service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
        except (ValueError, KeyError) as exc:
            raise ConfigError(f"GOOGLE_SERVICE_ACCOUNT_JSON is not a service-account key: {exc}") from None
        return ServiceAccountToken(credentials)
    if settings.google_play_access_token:
        return _static(settings.google_play_access_token)
    return _missing


def _service_account_info(value: str) -> dict:
    """The key's JSON, given as the text itself or as a path to it."""
    try:
        if value.lstrip().startswith("{"):
            return json.loads(value)
        with open(os.path.expanduser(value), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"GOOGLE_SERVICE_ACCOUNT_JSON is neither key JSON nor a readable key file: "
                          f"{type(exc).__name__}") from None
