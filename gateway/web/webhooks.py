"""POST /webhooks/<source>: the body is read under the size limit, then ingested."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from gateway.errors import NotFound, TooLarge

bp = Blueprint("webhooks", __name__)

_CHUNK = 64 * 1024


def read_body(limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes ``limit`` bytes.

    A declared Content-Length is checked before reading; a chunked body without one is
    read in pieces and refused at the first byte past the limit, never held whole.
    """
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"the body is larger than {limit} bytes")
    chunks, size = [], 0
    while True:
        chunk = request.stream.read(min(_CHUNK, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the body is larger than {limit} bytes")
        chunks.append(chunk)


@bp.post("/webhooks/<source>")
def receive(source: str):
    services = current_app.extensions["gateway"]
    provider = services.providers.get(source)
    if provider is None:
        raise NotFound(f"no webhook source named {source!r}")
    body = read_body(services.settings.max_body_bytes)
    status = services.ingest.receive(provider, body, request.headers)
    return jsonify({"status": status})
