"""The Stripe API calls the gateway makes, behind a small port.

Every call is bounded (``TIMEOUT`` seconds, no automatic retries): the webhook request
must not wait on Stripe, and a failed call defers the event to our own retry worker.
Answers are plain dicts parsed from Stripe's JSON (``StripeResponse.data``), because
from stripe-python 15 on Stripe objects are no longer dicts.
"""
from __future__ import annotations

import logging
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

import stripe

from cognito_triggers.stripe_customers import key_in_use
from gateway.errors import StoreApiError

log = logging.getLogger("gateway.stripe")

#: The API version the gateway reads and writes: the one stripe-python is generated for.
PINNED_VERSION = stripe.api_version
TIMEOUT = 5.0
#: Pages of 100 a list is read to (an invoice's lines or payments, a payment's refunds); more is refused.
MAX_PAGES = 20


class StripeApiError(StoreApiError):
    """Stripe did not answer, or answered with an error."""

    def __init__(self, message: str, *, refused: bool = False, status: int | None = None,
                 stripe_code: str | None = None) -> None:
        super().__init__(message)
        #: Stripe answered 4xx other than 429: retrying the same call will not help.
        self.refused = refused
        #: The HTTP status Stripe answered with; None when it did not answer.
        self.status = status
        #: Stripe's error ``code`` (https://docs.stripe.com/error-codes), when it gave one.
        self.stripe_code = stripe_code

    @property
    def missing(self) -> bool:
        """Stripe does not know the object in the key's account and mode: 404
        ``resource_missing`` (https://docs.stripe.com/error-codes#resource-missing)."""
        return self.status == 404 and self.stripe_code == "resource_missing"

    @classmethod
    def from_stripe(cls, exc: stripe.StripeError, call: str) -> StripeApiError:
        """stripe-python's error for ``call``, classified once for every caller: a 4xx other
        than 429 is refused; no answer, a 429, a 5xx or an idempotency key still in use by
        another request (retried later, it gets that request's answer) is Stripe unavailable."""
        status = exc.http_status
        detail = " ".join(str(exc.user_message or type(exc).__name__).split())[:300]
        return cls(f"{call} failed ({status or 'no answer'}): {detail}", status=status, stripe_code=exc.code,
                   refused=status is not None and 400 <= status < 500 and status != 429 and not key_in_use(exc))


class StripeApi(Protocol):
    def subscription(self, subscription_id: str) -> dict: ...

    def subscription_answered(self, subscription_id: str) -> tuple[dict, datetime | None]: ...

    def customer(self, customer_id: str) -> dict: ...

    def invoice(self, invoice_id: str) -> dict: ...

    def charge(self, charge_id: str) -> dict: ...

    def invoice_of_payment_intent(self, payment_intent_id: str) -> str | None: ...

    def payments_of_invoice(self, invoice_id: str) -> list[dict]: ...

    def refunds_of(self, kind: str, payment_id: str) -> list[dict]: ...

    def create_checkout_session(self, params: dict, idempotency_key: str | None = None) -> dict: ...

    def create_portal_session(self, params: dict) -> dict: ...

    def cancel_subscription(self, subscription_id: str, idempotency_key: str | None = None) -> dict: ...

    def open_checkout_sessions(self, customer_id: str) -> list[dict]: ...

    def expire_checkout_session(self, session_id: str) -> dict: ...


class StripeHttpApi:
    def __init__(self, api_key: str, api_base: str | None = None, timeout: float = TIMEOUT) -> None:
        bases = {"api": api_base.rstrip("/")} if api_base else None
        self.client = stripe.StripeClient(
            api_key, stripe_version=PINNED_VERSION, base_addresses=bases, max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=timeout),
        )

    def _call(self, method: str, path: str, **params) -> dict:
        return self._response(method, path, **params).data

    def _response(self, method: str, path: str, **params) -> stripe.StripeResponse:
        try:
            return self.client.raw_request(method, path, **params)
        except stripe.StripeError as exc:
            raise StripeApiError.from_stripe(exc, f"Stripe {method.upper()} {path}") from None

    def subscription(self, subscription_id: str) -> dict:
        return self._call("get", f"/v1/subscriptions/{subscription_id}")

    def subscription_answered(self, subscription_id: str) -> tuple[dict, datetime | None]:
        """The subscription, and when Stripe answered by its own clock: the answer's
        ``Date`` header (RFC 9110 section 6.6.1, to the second), the clock events' ``created``
        are stamped by; ``None`` when it is missing or unreadable."""
        response = self._response("get", f"/v1/subscriptions/{subscription_id}")
        return response.data, answered_at(response.headers)

    def customer(self, customer_id: str) -> dict:
        return self._call("get", f"/v1/customers/{customer_id}")

    def invoice(self, invoice_id: str) -> dict:
        """The invoice with every line: it embeds only the first ones (prorations are listed
        first), the rest are read from https://docs.stripe.com/api/invoices/invoice_lines."""
        invoice = self._call("get", f"/v1/invoices/{invoice_id}")
        lines = invoice.get("lines")
        if not isinstance(lines, dict) or lines.get("has_more") is not True:
            return invoice
        data = self._listed(f"/v1/invoices/{invoice_id}/lines", _items(lines))
        return {**invoice, "lines": {**lines, "data": data, "has_more": False}}

    def charge(self, charge_id: str) -> dict:
        return self._call("get", f"/v1/charges/{charge_id}")

    def invoice_of_payment_intent(self, payment_intent_id: str) -> str | None:
        """The invoice a PaymentIntent paid, through the Invoice Payments API (basil+).

        https://docs.stripe.com/api/invoice-payment/list
        """
        answer = self._call("get", "/v1/invoice_payments", limit=1,
                            payment={"type": "payment_intent", "payment_intent": payment_intent_id})
        data = answer.get("data") or []
        invoice = data[0].get("invoice") if data and isinstance(data[0], dict) else None
        return invoice.get("id") if isinstance(invoice, dict) else invoice

    def payments_of_invoice(self, invoice_id: str) -> list[dict]:
        """Every payment made on an invoice (basil+: an invoice may be paid by several),
        each with its ``status`` and ``payment`` (``type`` ``payment_intent`` or ``charge``).

        https://docs.stripe.com/api/invoice-payment/list
        """
        return self._listed("/v1/invoice_payments", [], invoice=invoice_id)

    def refunds_of(self, kind: str, payment_id: str) -> list[dict]:
        """The refunds of a payment (``kind`` ``charge`` or ``payment_intent``) as Stripe
        shows them now, newest first, every page (https://docs.stripe.com/api/refunds/list):
        a failed one keeps its id, ``status`` ``failed``. Events render a charge without
        them since API version 2022-11-15."""
        return self._listed("/v1/refunds", [], **{kind: payment_id})

    def _listed(self, path: str, shown: list[dict], **params) -> list[dict]:
        """``shown`` and the rest of the list at ``path``, page after page
        (https://docs.stripe.com/api/pagination: ``has_more``, ``starting_after``)."""
        items = list(shown)
        for _ in range(MAX_PAGES):
            after = {"starting_after": items[-1]["id"]} if items else {}
            answer = self._call("get", path, limit=100, **params, **after)
            page = _items(answer)
            items += page
            if not page or answer.get("has_more") is not True:
                return items
        raise StripeApiError(f"Stripe GET {path} lists more than {100 * MAX_PAGES}", refused=True)

    def create_checkout_session(self, params: dict, idempotency_key: str | None = None) -> dict:
        options = {"idempotency_key": idempotency_key} if idempotency_key else {}
        return self._call("post", "/v1/checkout/sessions", **params, **options)

    def create_portal_session(self, params: dict) -> dict:
        return self._call("post", "/v1/billing_portal/sessions", **params)

    def cancel_subscription(self, subscription_id: str, idempotency_key: str | None = None) -> dict:
        """Cancel at once: the customer is not charged again (``DELETE /v1/subscriptions/{id}``,
        https://docs.stripe.com/api/subscriptions/cancel). No proration credit or final
        invoice is asked for (``invoice_now``, ``prorate`` left unset). The answer is the
        subscription, ``status`` ``canceled``."""
        options = {"idempotency_key": idempotency_key} if idempotency_key else {}
        return self._call("delete", f"/v1/subscriptions/{subscription_id}", **options)

    def open_checkout_sessions(self, customer_id: str) -> list[dict]:
        """The customer's Checkout Sessions still open, every page
        (https://docs.stripe.com/api/checkout/sessions/list: ``customer``, ``status``)."""
        return self._listed("/v1/checkout/sessions", [], customer=customer_id, status="open")

    def expire_checkout_session(self, session_id: str) -> dict:
        """Expire an open session: it can no longer be completed
        (https://docs.stripe.com/api/checkout/sessions/expire). Stripe refuses one that is
        not open (completed, or expired already)."""
        return self._call("post", f"/v1/checkout/sessions/{session_id}/expire")


def answered_at(headers) -> datetime | None:
    date = next((value for name, value in (headers or {}).items() if name.lower() == "date"), None)
    try:
        answered = parsedate_to_datetime(date) if isinstance(date, str) else None
    except (TypeError, ValueError):
        return None
    return answered if answered is not None and answered.tzinfo is not None else None


def _items(listed: dict) -> list[dict]:
    """The objects of a Stripe list that have an id (the cursor of the next page)."""
    data = listed.get("data")
    return [item for item in data if isinstance(item, dict) and isinstance(item.get("id"), str)] \
        if isinstance(data, list) else []
