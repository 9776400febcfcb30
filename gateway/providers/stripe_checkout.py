"""Checkout and Customer Portal sessions, as Stripe's API makes them.

The user's Stripe customer comes from ``ensure_customer`` (shared with the Cognito
trigger, idempotent per sub); ``gateway.checkout`` links it to the sub in our store before
a session exists. Sessions: https://docs.stripe.com/api/checkout/sessions/create and
https://docs.stripe.com/api/customer_portal/sessions/create.
"""
from __future__ import annotations

import stripe

from cognito_triggers.stripe_customers import CustomerPending, StripeCustomers
from gateway.errors import GatewayError, Unavailable
from gateway.providers.stripe_api import TIMEOUT, StripeApiError, StripeHttpApi


class StripeRefused(GatewayError):
    """Stripe answered the call with a client error: retrying it will not help."""

    status, code = 502, "stripe_refused"


class StripeCheckout:
    def __init__(self, api: StripeHttpApi, customers: StripeCustomers) -> None:
        self.api, self.customers = api, customers

    def ensure_customer(self, user_sub: str) -> str:
        """The user's Stripe customer id, made if missing."""
        return _calling_stripe(lambda: self.customers.ensure_customer(user_sub))

    def checkout_session(self, customer: str, user_sub: str, price_id: str, success_url: str,
                         cancel_url: str) -> dict:
        params = {
            "mode": "subscription", "customer": customer, "client_reference_id": user_sub,
            "line_items": [{"price": price_id, "quantity": 1}],
            "success_url": success_url, "cancel_url": cancel_url,
            "subscription_data": {"metadata": {"cognito_sub": user_sub}},
            "metadata": {"cognito_sub": user_sub},
        }
        session = _calling_stripe(lambda: self.api.create_checkout_session(params))
        return {"id": session["id"], "url": session["url"]}

    def portal_session(self, customer: str, return_url: str) -> dict:
        session = _calling_stripe(lambda: self.api.create_portal_session(
            {"customer": customer, "return_url": return_url}))
        return {"url": session["url"]}


def _calling_stripe(call):
    """Stripe being down or slow is a 503 the client may retry; a refusal is a 502."""
    try:
        return call()
    except CustomerPending as exc:
        raise Unavailable(str(exc), code="stripe_unavailable", retry_after=exc.retry_after) from None
    except stripe.StripeError as exc:  # from ensure_customer, which uses stripe-python directly
        failure = StripeApiError.from_stripe(exc, "Stripe customer lookup")
    except StripeApiError as exc:
        failure = exc
    if failure.refused:
        raise StripeRefused(str(failure))
    raise Unavailable(str(failure), code="stripe_unavailable")


def build(settings) -> StripeCheckout | None:
    if not settings.stripe_api_key:
        return None
    api = StripeHttpApi(settings.stripe_api_key, settings.stripe_api_base)
    customers = StripeCustomers(settings.stripe_api_key, settings.stripe_api_base, timeout=TIMEOUT)
    return StripeCheckout(api, customers)
