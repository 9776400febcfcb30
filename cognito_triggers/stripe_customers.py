"""One Stripe customer per Cognito user, shared by the post confirmation trigger and the
gateway's checkout. Imports neither Flask nor SQLAlchemy.

Two guards keep a user from getting a second customer:

- a search by ``metadata['cognito_sub']`` first (https://docs.stripe.com/api/customers/search),
  which finds a customer made at any time by anyone who set that metadata;
- creation under an idempotency key derived from the sub (https://docs.stripe.com/api/idempotent_requests),
  because search results can lag a write by up to a minute
  (https://docs.stripe.com/search#data-freshness) while Cognito retries within seconds.
  Stripe keeps keys for at least 24 hours; after that the search has long caught up.

Two creations for one user can overlap (the trigger and a checkout, or two trigger attempts).
While the first is still executing, Stripe answers the second 409 ``idempotency_key_in_use``
and saves nothing for it, so the same request is safe to send again
(https://docs.stripe.com/api/idempotent_requests): it is, a few times after a short wait.

Stripe also saves the answer of a request that began executing and failed, a ``500`` included,
and replays it (``Idempotent-Replayed: true``) to every request with the key for 24 hours. So a
key whose saved answer is a server error, or whose first request had other parameters (the
trigger sends the email, checkout does not), is settled: its request has ended. Then the list of
customers made in the last minutes, which unlike search shows a customer at once, and the
search for older ones tell whether that request made the user's customer after all. If none
did, creation moves on to the user's next key (``idempotency_key``): the same for every caller,
so rival creations that move on together still meet on one key and make one customer.
"""
from __future__ import annotations

import time
from typing import Callable, Union

import requests
import stripe

IDEMPOTENCY_PREFIX = "cognito-customer-"
#: Keys one user's creation may go through, each only once the one before is settled with no customer.
KEY_GENERATIONS = 3
#: How far back the list of new customers reaches: well past the search's lag, which is under a
#: minute when Stripe is well (longer during an outage: https://docs.stripe.com/search#data-freshness).
RECENT_SECONDS = 15 * 60
#: Pages of that list (100 customers each) read at most before giving up on ruling a customer out.
RECENT_PAGES = 10
MAX_CONNECT_TIMEOUT = 1.0
#: Seconds to wait before each new create while another request with the key still executes.
IN_FLIGHT_WAITS = (0.25, 0.5, 1.0)

#: Seconds for a whole call, or a function giving them call by call (a caller's deadline).
Timeout = Union[float, Callable[[], float]]


def idempotency_key(sub: str, generation: int = 0) -> str:
    """``cognito-customer-<sub>``, then ``cognito-customer.2-<sub>``, ``cognito-customer.3-<sub>``."""
    return IDEMPOTENCY_PREFIX + sub if generation == 0 else f"{IDEMPOTENCY_PREFIX[:-1]}.{generation + 1}-{sub}"


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


def saved_failure(error: stripe.StripeError) -> bool:
    """A server error Stripe saved under the key and replays: the key will never make the customer."""
    headers = {name.lower(): value for name, value in (error.headers or {}).items()}
    return (error.http_status or 0) >= 500 and headers.get("idempotent-replayed") == "true"


def settled(error: stripe.StripeError) -> bool:
    """The key's first request has ended without giving us its customer: a saved server error,
    or other parameters (``IdempotencyError``), whose saved answer Stripe does not show."""
    return isinstance(error, stripe.IdempotencyError) or saved_failure(error)


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
    def __init__(self, api_key: str, api_base: str | None = None, timeout: Timeout = 10.0,
                 max_network_retries: int = 0) -> None:
        # No retries by default: the trigger has 5 seconds and Cognito retries the whole
        # invocation anyway. A batch (the backfill) asks for stripe-python's own: a connection
        # error, a 409 or a 5xx is sent again after an exponential backoff (0.5 s, at most 5 s).
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=max_network_retries,
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
        params = _customer_params(sub, email, name, username)
        for generation in range(KEY_GENERATIONS):
            try:
                return self._create(sub, idempotency_key(sub, generation), params).id
            except stripe.StripeError as error:
                if not settled(error):
                    raise  # a fresh server error too: whether Stripe saved it, the next call sees
                failure = error
            existing = self.find_customer(sub) or self._recent_customer(sub)
            if existing:
                return existing
        raise CustomerPending(f"every idempotency key of {sub} is spent on a failed creation (last: "
                              f"{failure.http_status}); Stripe forgets them after 24 hours") from None

    def _recent_customer(self, sub: str) -> str | None:
        """The user's customer among those made lately, read from the list, which shows a new
        customer at once (https://docs.stripe.com/api/customers/list); the oldest if several."""
        params: dict = {"created": {"gte": int(time.time()) - RECENT_SECONDS}, "limit": 100}
        for _ in range(RECENT_PAGES):
            page = self._client.v1.customers.list(params=params)
            mine = [customer for customer in page.data if _sub_of(customer) == sub]
            if mine:
                return min(mine, key=lambda customer: (customer.created, customer.id)).id
            if not page.has_more:
                return None
            params["starting_after"] = page.data[-1].id
        raise CustomerPending(f"over {RECENT_PAGES * 100} customers were made in the last {RECENT_SECONDS // 60} "
                              f"minutes: whether {sub} has one is known once the search shows it")

    def _create(self, sub: str, key: str, params: dict):
        """Create under ``key``, sent again after each wait while the key is in use."""
        for wait in (*IN_FLIGHT_WAITS, None):
            try:
                return self._client.v1.customers.create(params=params, options={"idempotency_key": key})
            except stripe.StripeError as error:
                if not key_in_use(error):
                    raise
                if wait is None:
                    raise CustomerInFlight(f"the customer of {sub} is still being created by another request "
                                           "(Stripe: idempotency key in use); ask again in a few seconds") from None
            time.sleep(wait)


def _sub_of(customer) -> str | None:
    metadata = customer.metadata.to_dict() if customer.metadata else {}
    return metadata.get("cognito_sub")


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
