"""POST /webhooks/<source>: the body is read under the size limit, then ingested."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from gateway.errors import NotFound
from gateway.web.bodies import read_body

bp = Blueprint("webhooks", __name__)


@bp.post("/webhooks/<source>")
def receive(source: str):
    services = current_app.extensions["gateway"]
    provider = services.providers.get(source)
    if provider is None:
        raise NotFound(f"no webhook source named {source!r}")
    body = read_body(services.settings.max_body_bytes)
    status = services.ingest.receive(provider, body, request.headers)
    return jsonify({"status": status})
