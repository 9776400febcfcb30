"""Every known error becomes JSON here, once."""
from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from gateway.errors import GatewayError

log = logging.getLogger("gateway.web")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(GatewayError)
    def _known(error: GatewayError):
        body = {"error": error.code, "message": error.message}
        return jsonify(body), error.status

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException):
        code = (error.name or "error").lower().replace(" ", "_")
        return jsonify({"error": code, "message": error.description}), error.code

    @app.errorhandler(Exception)
    def _unknown(error: Exception):
        log.exception("unhandled error")
        return jsonify({"error": "internal_error"}), 500
