"""Liveness and readiness."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from gateway.store.port import StoreUnavailable

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    try:
        current_app.extensions["gateway"].store.ping()
    except StoreUnavailable as exc:
        return jsonify({"status": "unavailable", "error": "database_unreachable", "message": str(exc)}), 503
    return jsonify({"status": "ok"})
