"""Liveness and readiness."""
from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify

from gateway.store.port import StoreUnavailable

bp = Blueprint("health", __name__)
log = logging.getLogger("gateway.web")


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    try:
        current_app.extensions["gateway"].store.ping()
    except StoreUnavailable as exc:
        # The driver's message names the database's host, port and user: the log's, not
        # the answer's, since anyone may ask.
        log.warning("readiness: the database is unreachable", extra={"fields": {"error": str(exc)}})
        return jsonify({"status": "unavailable", "error": "database_unreachable",
                        "message": "the database cannot be reached; the log says why"}), 503
    return jsonify({"status": "ok"})
