"""What the database cannot store, replaced: a delivery may carry it, PostgreSQL refuses it."""
from __future__ import annotations

import dataclasses
import logging
import math
import re

from gateway.errors import Malformed
from gateway.providers import Delivery

log = logging.getLogger("gateway.ingest")


# What PostgreSQL cannot hold in text or jsonb: NUL, and a surrogate code point that
# is not half of a pair (JSON's "\ud800" escape decodes to one).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(delivery: Delivery) -> Delivery:
    """The delivery with characters the database cannot store replaced by U+FFFD.

    A store may legitimately send them (a NUL typed into a customer's name). Refusing
    the delivery would make the store resend it for days, and storing it as-is fails
    on PostgreSQL every time; so the decoded data is cleaned, deterministically, and
    translated again from the cleaned data. Almost every delivery has none: then it is
    returned untouched.
    """
    if not 0 < len(delivery.event_id) <= 255:  # the event log's column: longer would fail every retry
        raise Malformed("the event id must be 1 to 255 characters", code="malformed_event_id")
    if len(delivery.event_type) > 128:
        delivery = dataclasses.replace(delivery, event_type=delivery.event_type[:128])
    fields = (delivery.event_id, delivery.event_type, delivery.payload)
    if not any(_UNSTORABLE.search(text) for text in fields) and not _holds_unstorable(delivery.data):
        return delivery
    log.warning("delivery holds characters the database cannot store; replaced with U+FFFD",
                extra={"fields": {"source": delivery.source, "event_id": clean(delivery.event_id)}})
    return dataclasses.replace(
        delivery, event_id=clean(delivery.event_id), event_type=clean(delivery.event_type),
        payload=clean(delivery.payload), data=clean(delivery.data), translation=None)


def _holds_unstorable(value) -> bool:
    if isinstance(value, str):
        return _UNSTORABLE.search(value) is not None
    if isinstance(value, float) and not math.isfinite(value):  # Python's json reads NaN; JSON has none
        raise Malformed("the body is not JSON: NaN and Infinity are not numbers there", code="malformed_json")
    if isinstance(value, dict):
        return any(_holds_unstorable(k) or _holds_unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_unstorable(item) for item in value)
    return False


def clean(value):
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {clean(k): clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(item) for item in value]
    return value
