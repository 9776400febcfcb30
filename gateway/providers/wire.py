"""What arrives from outside, read one way: JSON documents and store timestamps.

Every webhook body, and the JSON inside it (an App Store JWS payload, a Pub/Sub message's
data), is parsed by ``parse_object``: invalid UTF-8, invalid JSON, NaN or Infinity, a
number too large for a float, nesting deeper than ``MAX_DEPTH`` and a document that is not
an object are all refused alike, as ``Malformed`` (400). Deep nesting is refused before
parsing: ``json`` recurses once per level and raises ``RecursionError`` (not a
``ValueError``) near a thousand, and so would any later walk of such a document.

Timestamps become aware datetimes through ``from_millis`` and ``from_seconds``, which
refuse, as ``Malformed``, a value outside ``EARLIEST``..``LATEST`` instead of letting
``datetime`` raise ``OverflowError``, ``ValueError`` or ``OSError``.
"""
from __future__ import annotations

import json
import math
import re
from array import array
from datetime import datetime, timezone
from itertools import accumulate
from typing import Any

from gateway.errors import Malformed

#: Deepest nesting accepted. Stripe's events, the deepest the stores send, stay under 15.
MAX_DEPTH = 64

# A string literal, consumed possessively so that scanning is linear even when one is
# never closed (every character is looked at once).
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+"?', re.DOTALL)
_OPEN, _CLOSE = b"[{", b"]}"
# Brackets become +1 and -1 (as signed bytes); every other byte is deleted.
_STEPS = bytes.maketrans(_OPEN + _CLOSE, b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _OPEN + _CLOSE)


def depth(data: bytes) -> int:
    """How deep the brackets of a JSON text nest, strings left out (exact for valid
    JSON; for invalid JSON any answer will do, the parser refuses it anyway)."""
    if data.count(b"[") + data.count(b"{") <= MAX_DEPTH:  # too few brackets to nest too deep
        return 0
    steps = _STRING.sub(b"", data).translate(_STEPS, _NOT_BRACKETS)
    return max(accumulate(array("b", steps)), default=0)


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e400 reads as inf, which no JSON column can hold
        raise ValueError(f"the number {text[:20]} is out of range")
    return number


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def loads(data: bytes | str) -> Any:
    """A JSON document from outside; ``ValueError`` for anything ``parse_object`` refuses
    (callers that answer otherwise, a token's 401, catch that)."""
    if isinstance(data, str):
        text, raw = data, data.encode("utf-8", "surrogatepass")
    else:  # a UnicodeDecodeError is a ValueError: JSON on the wire is UTF-8 (RFC 8259)
        raw = bytes(data)
        text = raw.decode("utf-8")
    if depth(raw) > MAX_DEPTH:
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError:  # unreachable after the depth check; kept as the last line of defence
        raise ValueError("JSON nested too deep") from None


def parse_object(body: bytes | str, what: str = "the body", code: str = "malformed_json") -> dict:
    """``body`` as a JSON object, or ``Malformed(code)`` naming ``what`` was wrong."""
    try:
        document = loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise Malformed(f"{what} is not JSON: {exc}", code=code) from None
    if not isinstance(document, dict):
        raise Malformed(f"{what} must be a JSON object", code=code)
    return document


# Timestamps: no store sends a date before 1970, and a year is left below datetime's end
# (9999-12-31) so that adding a period or a backoff to an accepted date cannot overflow.
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(9999, 1, 1, tzinfo=timezone.utc)
_LATEST_MS = int(LATEST.timestamp()) * 1000


def from_millis(value: int, what: str = "a timestamp", code: str = "malformed_timestamp") -> datetime:
    """UNIX milliseconds (an int, not a bool) as an aware UTC datetime, or ``Malformed``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise Malformed(f"{what} must be whole milliseconds, got {type(value).__name__}", code=code)
    if not 0 <= value < _LATEST_MS:
        raise Malformed(f"{what} is out of range ({EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d})", code=code)
    return datetime.fromtimestamp(value // 1000, tz=timezone.utc).replace(microsecond=value % 1000 * 1000)


def from_seconds(value: int, what: str = "a timestamp", code: str = "malformed_timestamp") -> datetime:
    """UNIX seconds (an int, not a bool) as an aware UTC datetime, or ``Malformed``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise Malformed(f"{what} must be whole seconds, got {type(value).__name__}", code=code)
    if not 0 <= value < _LATEST_MS // 1000:
        raise Malformed(f"{what} is out of range ({EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d})", code=code)
    return datetime.fromtimestamp(value, tz=timezone.utc)
