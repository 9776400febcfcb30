"""Checkout and Customer Portal sessions for a signed-in user.

The user's Stripe customer comes from ``ensure_customer`` (shared with the Cognito
trigger, idempotent per sub) and is linked to the sub in our store before the session
exists, so every webhook about that customer finds its owner. Sessions:
https://docs.stripe.com/api/checkout/sessions/create and
https://docs.stripe.com/api/customer_portal/sessions/create.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import stripe

from cognito_triggers.stripe_customers import CustomerPending, StripeCustomers
from gateway.apply import apply_translation
from gateway.domain.catalog import Catalog
from gateway.domain.changes import Link, Translation
from gateway.errors import GatewayError, Unavailable
from gateway.providers.stripe_api import TIMEOUT, StripeApiError, StripeHttpApi
from gateway.store.port import Store, StoreUnavailable


class StripeRefused(GatewayError):
    """Stripe answered the call with a client error: retrying it will not help."""

    status, code = 502, "stripe_refused"


class StripeCheckout:
    def __init__(self, api: StripeHttpApi, customers: StripeCustomers, store: Store, catalog: Catalog,
                 clock: Callable[[], datetime]) -> None:
        self.api, self.customers, self.store, self.catalog, self.clock = api, customers, store, catalog, clock

    def checkout_session(self, user_sub: str, price_id: str, success_url: str, cancel_url: str) -> dict:
        customer = self._customer_of(user_sub)
        params = {
            "mode": "subscription", "customer": customer, "client_reference_id": user_sub,
            "line_items": [{"price": price_id, "quantity": 1}],
            "success_url": success_url, "cancel_url": cancel_url,
            "subscription_data": {"metadata": {"cognito_sub": user_sub}},
            "metadata": {"cognito_sub": user_sub},
        }
        session = _calling_stripe(lambda: self.api.create_checkout_session(params))
        return {"id": session["id"], "url": session["url"]}

    def portal_session(self, user_sub: str, return_url: str) -> dict:
        customer = self._customer_of(user_sub)
        session = _calling_stripe(lambda: self.api.create_portal_session(
            {"customer": customer, "return_url": return_url}))
        return {"url": session["url"]}

    def _customer_of(self, user_sub: str) -> str:
        customer = _calling_stripe(lambda: self.customers.ensure_customer(user_sub))
        now = self.clock()
        try:
            with self.store.transaction() as tx:
                apply_translation(tx, Translation(links=(Link("stripe", customer, user_sub, now),)),
                                  self.catalog, now)
        except StoreUnavailable as exc:
            raise Unavailable("the customer link cannot be stored right now", code="store_unavailable") from exc
        return customer


def _calling_stripe(call):
    """Stripe being down or slow is a 503 the client may retry; a refusal is a 502."""
    try:
        return call()
    except StripeApiError as exc:
        if exc.refused:
            raise StripeRefused(str(exc)) from None
        raise Unavailable(str(exc), code="stripe_unavailable") from None
    except CustomerPending as exc:
        raise Unavailable(str(exc), code="stripe_unavailable") from None
    except stripe.StripeError as exc:  # from ensure_customer, which uses stripe-python directly
        status = exc.http_status
        message = f"Stripe customer lookup failed ({status or 'no answer'}): {exc.user_message or type(exc).__name__}"
        if status is not None and 400 <= status < 500 and status != 429:
            raise StripeRefused(message) from None
        raise Unavailable(" ".join(message.split())[:300], code="stripe_unavailable") from None


def build(settings, store: Store, catalog: Catalog, clock: Callable[[], datetime]) -> StripeCheckout | None:
    if not settings.stripe_api_key:
        return None
    api = StripeHttpApi(settings.stripe_api_key, settings.stripe_api_base)
    customers = StripeCustomers(settings.stripe_api_key, settings.stripe_api_base, timeout=TIMEOUT)
    return StripeCheckout(api, customers, store, catalog, clock)
