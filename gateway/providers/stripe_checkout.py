"""Checkout and Customer Portal sessions, as Stripe's API makes them.

The user's Stripe customer comes from ``ensure_customer`` (shared with the Cognito
trigger, idempotent per sub); ``gateway.checkout`` links it to the sub in our store before
a session exists. Sessions: https://docs.stripe.com/api/checkout/sessions/create and
https://docs.stripe.com/api/customer_portal/sessions/create.
"""
from __future__ import annotations

import logging

import stripe

from cognito_triggers.stripe_customers import CustomerPending, StripeCustomers
from gateway.errors import GatewayError, Unavailable
from gateway.providers.stripe_api import TIMEOUT, StripeApiError, StripeHttpApi

log = logging.getLogger("gateway.stripe")


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

    def expire_session(self, session_id: str) -> bool:
        """Expire a session whose URL is not handed out; whether Stripe did. A failure is
        logged and left: nobody holds the URL to pay it, and Stripe expires it within 24 hours
        (https://docs.stripe.com/api/checkout/sessions/expire)."""
        try:
            self.api.expire_checkout_session(session_id)
        except StripeApiError as exc:
            log.warning("a checkout session not handed out stays open", extra={"fields": {
                "session": session_id, "error": str(exc), "status": exc.status}})
            return False
        return True

    def portal_session(self, customer: str, return_url: str) -> dict:
        session = _calling_stripe(lambda: self.api.create_portal_session(
            {"customer": customer, "return_url": return_url}))
        return {"url": session["url"]}


def _calling_stripe(call):
    """Stripe being down or slow is a 503 the client may retry; a refusal is a 502. The
    client is told so in our words: Stripe's own message (the call made, ids of the
    account's objects, a masked key) is for the operator, in the log."""
    try:
        return call()
    except CustomerPending as exc:
        _logged(str(exc), retry_after=exc.retry_after)
        raise Unavailable("the user's Stripe customer is still being created; ask again shortly",
                          code="stripe_unavailable", retry_after=exc.retry_after) from None
    except stripe.StripeError as exc:  # from ensure_customer, which uses stripe-python directly
        failure = StripeApiError.from_stripe(exc, "Stripe customer lookup")
    except StripeApiError as exc:
        failure = exc
    _logged(str(failure), status=failure.status, refused=failure.refused)
    if failure.refused:
        raise StripeRefused("Stripe refused the gateway's request; the operator has to look into it")
    raise Unavailable("Stripe cannot be reached right now; ask again shortly", code="stripe_unavailable")


def _logged(detail: str, **fields) -> None:
    log.warning("a client's Stripe call failed", extra={"fields": {"error": detail, **fields}})


def build(settings) -> StripeCheckout | None:
    if not settings.stripe_api_key:
        return None
    api = StripeHttpApi(settings.stripe_api_key, settings.stripe_api_base)
    customers = StripeCustomers(settings.stripe_api_key, settings.stripe_api_base, timeout=TIMEOUT)
    return StripeCheckout(api, customers)
