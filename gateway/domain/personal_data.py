"""Personal data in stored deliveries, and its erasure when a user deletes their account.

A delivery's JSON is walked and the value of every personal key is replaced by
``REDACTED``, whatever it holds (text, an address object, RevenueCat's ``{"value": ...}``
attribute). What the ledger needs stays: ids, amounts, currencies, times, types,
statuses, products, and the user's sub (the tombstone keeps it anyway). Keys are
compared lower-cased without ``$``, ``_`` and ``-``, so Stripe's ``customer_email``,
RevenueCat's ``$email`` and a ``customerEmail`` are all found.
"""
from __future__ import annotations

import json
from typing import Any

REDACTED = "[redacted]"

#: Normalised key names whose values are personal data (Stripe's customer, charge,
#: invoice and checkout objects; RevenueCat's reserved subscriber attributes).
PERSONAL_KEYS = frozenset({
    "email", "name", "phone", "phonenumber", "address", "shipping", "shippingdetails", "shippingaddress",
    "billingdetails", "billingaddress", "customeremail", "customername", "customerphone", "customeraddress",
    "customerdetails", "customershipping", "customertaxids", "receiptemail", "displayname", "firstname",
    "lastname", "fullname", "givenname", "familyname", "ip", "ipaddress", "cardholdername",
    "fcmtokens", "apnstokens", "idfa", "idfv", "gpsadid", "androidid",
})


def is_personal(key: str) -> bool:
    return key.lower().replace("$", "").replace("_", "").replace("-", "") in PERSONAL_KEYS


def redact(value: Any) -> Any:
    """``value`` with every personal key's value replaced; a null stays null."""
    if isinstance(value, dict):
        return {k: (REDACTED if v is not None and is_personal(k) else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def carries(value: Any) -> bool:
    """Whether ``redact`` would change ``value``: a personal key holds something not erased yet."""
    if isinstance(value, dict):
        return any(v not in (None, REDACTED) and is_personal(k) or carries(v) for k, v in value.items())
    if isinstance(value, list):
        return any(carries(item) for item in value)
    return False


def redact_text(payload: str) -> str:
    """A stored body with its personal values replaced, when it is JSON; any other body
    (an Apple JWS inside ``signedPayload`` is JSON around a token, and carries no
    personal keys) is returned as it is."""
    try:
        parsed = json.loads(payload)
    except ValueError:
        return payload
    redacted = redact(parsed)
    return payload if redacted == parsed else json.dumps(redacted, separators=(",", ":"), ensure_ascii=False)
