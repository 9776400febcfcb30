"""Request bodies: read under the size limit, and the client actions' JSON loaded through
their marshmallow schema."""
from __future__ import annotations

import re

import marshmallow as ma
from flask import request

from gateway.errors import Malformed, TooLarge
from gateway.providers import wire

_UNUSABLE = re.compile("[\x00\ud800-\udfff]")
_CHUNK = 64 * 1024


def read_body(limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes ``limit`` bytes.

    A declared Content-Length is checked before reading; a chunked body without one is
    read in pieces and refused at the first byte past the limit, never held whole.
    """
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"the body is larger than {limit} bytes")
    # Werkzeug's own bound (MAX_CONTENT_LENGTH) refuses any read once it is reached, so a
    # chunked body of exactly ``limit`` bytes could not be told from a longer one: one
    # byte more for Werkzeug, and the exact limit here.
    request.max_content_length = limit + 1
    chunks, size = [], 0
    while True:
        chunk = request.stream.read(min(_CHUNK, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the body is larger than {limit} bytes")
        chunks.append(chunk)


def load_body(schema: ma.Schema, code: str) -> dict:
    """The validated body; ``400 {"error": code}`` naming each bad field otherwise."""
    # Not request.get_json: it lets json's RecursionError (deep nesting) through as a 500;
    # nor get_data: past MAX_CONTENT_LENGTH it cuts a chunked body short without a word.
    document = wire.parse_object(read_body(request.max_content_length), code=code)
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
