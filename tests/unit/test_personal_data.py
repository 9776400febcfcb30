"""The erasure of personal values in stored deliveries: what goes, and the ledger that stays."""
from __future__ import annotations

import json

from gateway.domain.personal_data import REDACTED, carries, redact, redact_text


def test_personal_keys_are_redacted_at_any_depth_and_the_ledger_stays():
    invoice = {"id": "in_1", "amount_paid": 999, "currency": "usd", "status": "paid", "created": 1700000000,
               "customer_email": "jane@example.com", "customer_name": "Jane Roe",
               "customer_address": {"line1": "1 Main St"}, "customer_phone": None,
               "lines": {"data": [{"id": "il_1", "amount": 999, "billing_details": {"name": "Jane Roe"}}]},
               "metadata": {"cognito_sub": "sub-1"}}
    redacted = redact({"type": "invoice.paid", "data": {"object": invoice}})["data"]["object"]
    assert (redacted["id"], redacted["amount_paid"], redacted["currency"], redacted["status"],
            redacted["created"], redacted["metadata"]) == ("in_1", 999, "usd", "paid", 1700000000, {"cognito_sub": "sub-1"})
    assert redacted["customer_email"] == redacted["customer_name"] == redacted["customer_address"] == REDACTED
    assert redacted["customer_phone"] is None  # nothing there to erase
    assert redacted["lines"]["data"][0] == {"id": "il_1", "amount": 999, "billing_details": REDACTED}


def test_revenuecat_reserved_attributes_and_camel_case_keys_are_found():
    event = {"subscriber_attributes": {"$email": {"value": "j@example.com", "updated_at_ms": 1},
                                       "$displayName": {"value": "Jane"}, "level": {"value": "7"}},
             "customerEmail": "j@example.com", "price": 9.99}
    redacted = redact(event)
    assert redacted["subscriber_attributes"]["$email"] == redacted["subscriber_attributes"]["$displayName"] == REDACTED
    assert redacted["subscriber_attributes"]["level"] == {"value": "7"}
    assert (redacted["customerEmail"], redacted["price"]) == (REDACTED, 9.99)


def test_a_stored_body_is_rewritten_only_when_it_is_json_holding_personal_values():
    body = json.dumps({"id": "evt_1", "data": {"object": {"email": "j@example.com", "amount": 5}}})
    assert json.loads(redact_text(body)) == {"id": "evt_1", "data": {"object": {"email": REDACTED, "amount": 5}}}
    untouched = json.dumps({"signedPayload": "eyJhbGciOi.x.y"}, indent=1)
    assert redact_text(untouched) is untouched
    assert redact_text("not json at all: j@example.com") == "not json at all: j@example.com"


def test_carries_tells_whether_redact_would_change_anything():
    event = {"data": {"object": {"id": "cus_1", "metadata": {"cognito_sub": "sub-1"},
                                 "lines": [{"billing_details": {"name": "Jane Roe"}}]}}}
    assert carries(event) and carries(redact(event)) is False  # once erased, nothing is left
    assert not carries({"id": "cus_1", "email": None, "phone": REDACTED, "items": [{"amount": 5}]})
    assert carries([{"$email": {"value": "j@example.com"}}])
