"""Stripe JSON objects as the API renders them, in two API versions.

``legacy`` is 2024-06-20 (period on the subscription, ``invoice.subscription``,
``charge.invoice``); ``basil`` is 2025-03-31.basil and later (period on the items,
``invoice.parent.subscription_details``, no ``charge.invoice``). Field lists follow
https://docs.stripe.com/api/subscriptions/object, /api/invoices/object, /api/charges/object,
/api/refunds/object, /api/disputes/object, /api/checkout/sessions/object and /api/customers/object.
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


def invoice_line(shape: str, *, invoice_id: str, subscription_id: str | None, start: int, end: int,
                 amount: int = 999, proration: bool = False, price_id: str = "price_monthly") -> dict:
    """One of ``invoice.lines.data`` (https://docs.stripe.com/api/invoice-line-item/object):
    a subscription item's period, or a proration of it. ``period`` is the service period.
    Since basil ``parent`` says what billed it; before, ``type``, ``proration`` and
    ``subscription`` did."""
    line = {"id": new_id("il"), "object": "line_item", "amount": amount, "currency": "usd",
            "description": f"{'Remaining time on ' if proration else '1 × '}Premium", "discountable": not proration,
            "invoice": invoice_id, "livemode": False, "metadata": {}, "period": {"start": start, "end": end},
            "quantity": 1}
    item = f"si_{subscription_id[4:]}" if subscription_id else None
    invoice_item = new_id("ii") if proration or not subscription_id else None
    if shape == "basil":
        details = {"invoice_item": invoice_item, "proration": proration, "proration_details": {"credited_items": None},
                   "subscription": subscription_id, "subscription_item": item}
        line["parent"] = {"type": "subscription_item_details", "invoice_item_details": None,
                          "subscription_item_details": details} if subscription_id else {
            "type": "invoice_item_details", "subscription_item_details": None,
            "invoice_item_details": {"invoice_item": invoice_item, "proration": False, "proration_details": None,
                                     "subscription": None}}
        line["pricing"] = {"type": "price_details", "unit_amount_decimal": str(amount),
                           "price_details": {"price": price_id, "product": "prod_premium"}}
    else:
        line.update(type="subscription" if subscription_id and not proration else "invoiceitem",
                    proration=proration, subscription=subscription_id, subscription_item=item,
                    invoice_item=invoice_item, price=price(price_id))
    return line


def invoice(shape: str, *, invoice_id: str, customer: str, subscription_id: str | None,
            status: str = "paid", charge: str | None = None, payment_intent: str | None = None,
            cognito_sub: str | None = None, created: int | None = None,
            billing_reason: str = "subscription_cycle", period: tuple[int, int] | None = None,
            amount: int = 999) -> dict:
    """An invoice of ``subscription_id``. ``billing_reason`` ``subscription_create`` or
    ``subscription_cycle`` bills the period ``period`` (start, end; from ``created`` for
    30 days by default); ``subscription_update`` bills a proration from ``created`` to
    the period's end. ``period_start``/``period_end`` look back one period, as Stripe's do."""
    created = created or int(time.time())
    start, end = period or (created, created + 30 * DAY)
    metadata = {"cognito_sub": cognito_sub} if cognito_sub else {}
    proration = billing_reason == "subscription_update"
    lines = [invoice_line(shape, invoice_id=invoice_id, subscription_id=subscription_id, amount=amount,
                          start=created if proration else start, end=end, proration=proration)]
    looked_back = (start - 30 * DAY, start) if billing_reason == "subscription_cycle" else (created, created)
    body = {
        "id": invoice_id, "object": "invoice", "amount_due": amount, "amount_paid": amount if status == "paid" else 0,
        "amount_remaining": 0 if status == "paid" else amount, "attempt_count": 1, "attempted": True,
        "billing_reason": billing_reason, "collection_method": "charge_automatically",
        "created": created, "currency": "usd", "customer": customer, "livemode": False,
        "period_start": looked_back[0], "period_end": looked_back[1], "status": status, "total": amount,
        "lines": {"object": "list", "data": lines, "has_more": False, "total_count": len(lines),
                  "url": f"/v1/invoices/{invoice_id}/lines"},
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


def refund(*, refund_id: str, charge_id: str, payment_intent: str | None, amount: int = 999,
           status: str = "succeeded", created: int | None = None) -> dict:
    """https://docs.stripe.com/api/refunds/object. A failed refund keeps its id and says why
    (``failure_reason``); its amount is back on the charge (``amount_refunded``)."""
    failed = status == "failed"
    return {"id": refund_id, "object": "refund", "amount": amount, "balance_transaction": new_id("txn"),
            "charge": charge_id, "created": created or int(time.time()), "currency": "usd",
            "destination_details": {"type": "card", "card": {"type": "refund"}},
            "failure_balance_transaction": new_id("txn") if failed else None,
            "failure_reason": "expired_or_canceled_card" if failed else None, "metadata": {},
            "payment_intent": payment_intent, "reason": "requested_by_customer", "receipt_number": None,
            "source_transfer_reversal": None, "status": status, "transfer_reversal": None}


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


def customer(*, customer_id: str, cognito_sub: str | None = None, email: str = "user@example.com",
             created: int | None = None) -> dict:
    return {"id": customer_id, "object": "customer", "created": created or int(time.time()), "email": email,
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
