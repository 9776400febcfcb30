"""JSON request bodies of the client actions, loaded through their marshmallow schema."""
from __future__ import annotations

import re

import marshmallow as ma
from flask import request

from gateway.errors import Malformed
from gateway.providers import wire

_UNUSABLE = re.compile("[\x00\ud800-\udfff]")


def load_body(schema: ma.Schema, code: str) -> dict:
    """The validated body; ``400 {"error": code}`` naming each bad field otherwise."""
    # Not request.get_json: it lets json's RecursionError (deep nesting) through as a 500.
    document = wire.parse_object(request.get_data(cache=False), code=code)
    try:
        body = schema.load(document)
    except ma.ValidationError as exc:
        problems = "; ".join(f"{field}: {' '.join(map(str, errors))}" for field, errors in exc.messages.items())
        raise Malformed(f"invalid body: {problems}", code=code) from None
    # JSON's "\u0000" and "\ud800" escapes decode to characters no URL, store API or
    # PostgreSQL column takes (quote() raises on a lone surrogate): refused, not a 500.
    if any(isinstance(value, str) and _UNUSABLE.search(value) for value in body.values()):
        raise Malformed("the body holds a NUL or a lone surrogate", code=code)
    return body
