"""Query-string values of the API, checked the same way everywhere."""
from __future__ import annotations

from flask import request

from gateway.errors import Malformed


def query_number(name: str, default, minimum: int, maximum: int | None):
    """``?name=`` as a whole number within bounds; ``400 bad_query`` otherwise."""
    raw = request.args.get(name)
    if raw is None:
        return default
    # ASCII digits, and few enough for int(): past 4,300 digits it raises ValueError.
    # Leading zeros are not counted: 007 is 7, however many zeros lead.
    digits = raw.lstrip("0")
    number = int(digits or "0") if raw.isascii() and raw.isdigit() and len(digits) <= 20 else None
    if number is None or number < minimum or (maximum and number > maximum):
        bound = f"{minimum}..{maximum}" if maximum else f"at least {minimum}"
        raise Malformed(f"{name} must be a whole number {bound}", code="bad_query")
    return number
