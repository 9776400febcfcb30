"""One Stripe customer per Cognito user, shared by the post confirmation trigger and the
gateway's checkout. Imports neither Flask nor SQLAlchemy.

Two guards keep a user from getting a second customer:

- a search by ``metadata['cognito_sub']`` first (https://docs.stripe.com/api/customers/search),
  which finds a customer made at any time by anyone who set that metadata;
- creation under a fixed idempotency key per sub (https://docs.stripe.com/api/idempotent_requests),
  because search results can lag a write by up to a minute
  (https://docs.stripe.com/search#data-freshness) while Cognito retries within seconds.
  Stripe keeps keys for at least 24 hours; after that the search has long caught up.

Two creations for one user can overlap (the trigger and a checkout, or two trigger attempts).
While the first is still executing, Stripe answers the second 409 ``idempotency_key_in_use``
and saves nothing for it, so the same request is safe to send again
(https://docs.stripe.com/api/idempotent_requests): it is, a few times after a short wait.
"""
from __future__ import annotations

import time
from typing import Callable, Union

import requests
import stripe

IDEMPOTENCY_PREFIX = "cognito-customer-"
MAX_CONNECT_TIMEOUT = 1.0
#: Seconds to wait before each new create while another request with the key still executes.
IN_FLIGHT_WAITS = (0.25, 0.5, 1.0)

#: Seconds for a whole call, or a function giving them call by call (a caller's deadline).
Timeout = Union[float, Callable[[], float]]


def search_query(sub: str) -> str:
    """Stripe search syntax; quotes inside a value are escaped with a backslash."""
    value = sub.replace("\\", "\\\\").replace("'", "\\'")
    return f"metadata['cognito_sub']:'{value}'"


class CustomerPending(Exception):
    """The user's customer exists, or is being made, but cannot be found yet: ask again
    in a minute."""

    #: Seconds after which asking again should succeed, when that can be told.
    retry_after: int | None = None


class CustomerInFlight(CustomerPending):
    """Another request is still creating the user's customer under the same idempotency key,
    after every wait: ask again in a few seconds."""

    http_status, code = 409, "idempotency_key_in_use"
    retry_after = 2


def key_in_use(error: stripe.StripeError) -> bool:
    """Stripe's answer to a request whose idempotency key another request is still using.
    stripe-python raises it as a bare ``APIError`` (v1 maps only a 400 or 404 to
    ``IdempotencyError``), so the status and error code tell it."""
    return error.http_status == 409 and error.error is not None and error.error.code == "idempotency_key_in_use"


class _TimedSession(requests.Session):
    """Sets each request's timeout itself, so it can shrink as a caller's deadline nears.

    ``stripe.RequestsClient`` accepts a session; that is the library's public seam for this.
    """

    def __init__(self, timeout: Timeout) -> None:
        super().__init__()
        self._timeout = timeout

    def request(self, method, url, **kwargs):
        seconds = self._timeout() if callable(self._timeout) else self._timeout
        connect = min(MAX_CONNECT_TIMEOUT, seconds / 3)
        kwargs["timeout"] = (connect, seconds - connect)
        return super().request(method, url, **kwargs)


class StripeCustomers:
    def __init__(self, api_key: str, api_base: str | None = None, timeout: Timeout = 10.0) -> None:
        # No retries: Stripe's are for long-lived servers; the trigger has 5 seconds and
        # Cognito retries the whole invocation anyway.
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=0,
            http_client=stripe.RequestsClient(session=_TimedSession(timeout)),
        )

    def find_customer(self, sub: str) -> str | None:
        """The id of the user's customer, the oldest one if several carry the sub."""
        found = self._client.v1.customers.search(params={"query": search_query(sub), "limit": 10})
        ranked = sorted(found.data, key=lambda customer: (customer.created, customer.id))
        return ranked[0].id if ranked else None

    def ensure_customer(self, sub: str, email: str | None = None, name: str | None = None,
                        username: str | None = None) -> str:
        """The user's customer id, creating the customer if no search finds one."""
        existing = self.find_customer(sub)
        if existing:
            return existing
        try:
            customer = self._create(sub, _customer_params(sub, email, name, username))
        except stripe.IdempotencyError:
            # The key was first used with other parameters (the trigger sends the email,
            # checkout does not): that first request made the customer, so look for it
            # again. Stripe's search lags up to a minute behind.
            existing = self.find_customer(sub)
            if existing:
                return existing
            raise CustomerPending(f"the customer of {sub} is being created; Stripe's search does not show it yet")
        return customer.id

    def _create(self, sub: str, params: dict):
        """Create under the sub's key, sent again after each wait while the key is in use."""
        for wait in (*IN_FLIGHT_WAITS, None):
            try:
                return self._client.v1.customers.create(params=params,
                                                        options={"idempotency_key": IDEMPOTENCY_PREFIX + sub})
            except stripe.StripeError as error:
                if not key_in_use(error):
                    raise
                if wait is None:
                    raise CustomerInFlight(f"the customer of {sub} is still being created by another request "
                                           "(Stripe: idempotency key in use); ask again in a few seconds") from None
            time.sleep(wait)


def _customer_params(sub: str, email: str | None, name: str | None, username: str | None) -> dict:
    metadata = {"cognito_sub": sub}
    if username:
        metadata["cognito_username"] = username
    params: dict = {"metadata": metadata}
    if email:
        params["email"] = email
    if name:
        params["name"] = name
    return params
