"""Stripe JSON objects as the API renders them, in two API versions.

``legacy`` is 2024-06-20 (period on the subscription, ``invoice.subscription``,
``charge.invoice``); ``basil`` is 2025-03-31.basil and later (period on the items,
``invoice.parent.subscription_details``, no ``charge.invoice``). Field lists follow
https://docs.stripe.com/api/subscriptions/object, /api/invoices/object, /api/charges/object,
/api/disputes/object, /api/checkout/sessions/object and /api/customers/object.
"""
from __future__ import annotations

import itertools
import time

API_VERSIONS = {"legacy": "2024-06-20", "basil": "2025-03-31.basil"}
SHAPES = tuple(API_VERSIONS)
DAY = 86400
_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}_Test{next(_ids):010d}"


def price(price_id: str = "price_monthly", product: str = "prod_premium") -> dict:
    return {"id": price_id, "object": "price", "active": True, "currency": "usd", "product": product,
            "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed"},
            "type": "recurring", "unit_amount": 999, "livemode": False, "metadata": {}}


def subscription(shape: str, *, sub_id: str, customer: str, status: str = "active",
                 start: int | None = None, end: int | None = None, price_id: str = "price_monthly",
                 cognito_sub: str | None = None, **fields) -> dict:
    start = start or int(time.time()) - DAY
    end = end or start + 30 * DAY
    item = {"id": f"si_{sub_id[4:]}", "object": "subscription_item", "created": start, "metadata": {},
            "price": price(price_id), "quantity": 1, "subscription": sub_id, "tax_rates": []}
    body = {
        "id": sub_id, "object": "subscription", "application": None, "billing_cycle_anchor": start,
        "cancel_at": None, "cancel_at_period_end": False, "canceled_at": None,
        "collection_method": "charge_automatically", "created": start, "currency": "usd",
        "customer": customer, "default_payment_method": "pm_card_visa", "ended_at": None,
        "items": {"object": "list", "data": [item], "has_more": False, "total_count": 1,
                  "url": f"/v1/subscription_items?subscription={sub_id}"},
        "latest_invoice": None, "livemode": False,
        "metadata": {"cognito_sub": cognito_sub} if cognito_sub else {},
        "pause_collection": None, "start_date": start, "status": status, "trial_end": None,
        "trial_start": None,
    }
    if shape == "basil":
        item.update(current_period_start=start, current_period_end=end)
    else:
        item["plan"] = {"id": price_id, "object": "plan", "active": True, "amount": 999,
                        "currency": "usd", "interval": "month", "product": "prod_premium"}
        body.update(current_period_start=start, current_period_end=end, plan=item["plan"], quantity=1)
    body.update(fields)
    return body


def invoice(shape: str, *, invoice_id: str, customer: str, subscription_id: str | None,
            status: str = "paid", charge: str | None = None, payment_intent: str | None = None,
            cognito_sub: str | None = None, created: int | None = None) -> dict:
    created = created or int(time.time())
    metadata = {"cognito_sub": cognito_sub} if cognito_sub else {}
    body = {
        "id": invoice_id, "object": "invoice", "amount_due": 999, "amount_paid": 999 if status == "paid" else 0,
        "amount_remaining": 0 if status == "paid" else 999, "attempt_count": 1, "attempted": True,
        "billing_reason": "subscription_cycle", "collection_method": "charge_automatically",
        "created": created, "currency": "usd", "customer": customer, "livemode": False,
        "period_start": created - 30 * DAY, "period_end": created, "status": status, "total": 999,
        "lines": {"object": "list", "data": [], "has_more": False},
    }
    if shape == "basil":
        body["parent"] = None if subscription_id is None else {
            "type": "subscription_details", "quote_details": None,
            "subscription_details": {"metadata": metadata, "subscription": subscription_id}}
    else:
        body.update(subscription=subscription_id, charge=charge, payment_intent=payment_intent,
                    paid=status == "paid", subscription_details={"metadata": metadata})
    return body


def charge(shape: str, *, charge_id: str, customer: str, invoice_id: str | None, payment_intent: str,
           amount: int = 999, amount_refunded: int = 0) -> dict:
    body = {
        "id": charge_id, "object": "charge", "amount": amount, "amount_captured": amount,
        "amount_refunded": amount_refunded, "captured": True, "created": int(time.time()) - DAY,
        "currency": "usd", "customer": customer, "disputed": False, "livemode": False,
        "paid": True, "payment_intent": payment_intent, "payment_method": "pm_card_visa",
        "refunded": amount_refunded == amount, "status": "succeeded",
    }
    if shape == "legacy":
        body["invoice"] = invoice_id
    return body


def dispute(*, dispute_id: str, charge_id: str, payment_intent: str | None, amount: int = 999) -> dict:
    return {"id": dispute_id, "object": "dispute", "amount": amount, "charge": charge_id,
            "created": int(time.time()), "currency": "usd", "is_charge_refundable": False,
            "livemode": False, "metadata": {}, "payment_intent": payment_intent,
            "reason": "fraudulent", "status": "needs_response"}


def checkout_session(*, session_id: str, customer: str, subscription_id: str | None,
                     client_reference_id: str | None, mode: str = "subscription") -> dict:
    return {"id": session_id, "object": "checkout.session", "client_reference_id": client_reference_id,
            "created": int(time.time()), "currency": "usd", "customer": customer,
            "livemode": False, "metadata": {}, "mode": mode, "payment_status": "paid",
            "status": "complete", "subscription": subscription_id, "success_url": "https://example.com/ok",
            "url": None}


def customer(*, customer_id: str, cognito_sub: str | None = None, email: str = "user@example.com") -> dict:
    return {"id": customer_id, "object": "customer", "created": int(time.time()), "email": email,
            "livemode": False, "metadata": {"cognito_sub": cognito_sub} if cognito_sub else {},
            "name": None}


def event(event_type: str, obj: dict, *, shape: str = "basil", created: int | None = None,
          event_id: str | None = None, previous: dict | None = None) -> dict:
    data = {"object": obj}
    if previous is not None:
        data["previous_attributes"] = previous
    return {"id": event_id or new_id("evt"), "object": "event", "api_version": API_VERSIONS[shape],
            "created": created or int(time.time()), "data": data, "livemode": False,
            "pending_webhooks": 1, "request": {"id": new_id("req"), "idempotency_key": None},
            "type": event_type}
