"""JSON request bodies of the client actions, loaded through their marshmallow schema."""
from __future__ import annotations

import marshmallow as ma
from flask import request

from gateway.errors import Malformed


def load_body(schema: ma.Schema, code: str) -> dict:
    """The validated body; ``400 {"error": code}`` naming each bad field otherwise."""
    document = request.get_json(silent=True, force=True)
    if not isinstance(document, dict):
        raise Malformed("the body must be a JSON object", code=code)
    try:
        return schema.load(document)
    except ma.ValidationError as exc:
        problems = "; ".join(f"{field}: {' '.join(map(str, errors))}" for field, errors in exc.messages.items())
        raise Malformed(f"invalid body: {problems}", code=code) from None
