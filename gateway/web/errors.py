"""Every known error becomes JSON here, once; and input no database can hold is refused."""
from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from gateway.errors import GatewayError, TooLarge
from gateway.store.port import StoreRefused

log = logging.getLogger("gateway.web")


def register_error_handlers(app: Flask) -> None:
    @app.before_request
    def _refuse_nul():
        # PostgreSQL cannot compare or store NUL: a path or query holding one would fail
        # in the driver and be answered as an outage (503) instead of a bad request.
        req = request._get_current_object()
        if "\x00" in req.path or (req.query_string and any(
                "\x00" in k + v for k, v in req.args.items(multi=True))):
            return jsonify({"error": "bad_request", "message": "NUL characters are not allowed in a URL"}), 400

    @app.errorhandler(GatewayError)
    def _known(error: GatewayError):
        body = {"error": error.code, "message": error.message, **getattr(error, "details", {})}
        headers = {"Retry-After": str(error.retry_after)} if error.retry_after else {}
        return jsonify(body), error.status, headers

    @app.errorhandler(StoreRefused)
    def _refused(error: StoreRefused):
        # The database refused the request's values for good (too long, out of range): the
        # input caused it, and a 503 would have the caller retry what cannot succeed.
        log.warning("the database refused a request's values", extra={"fields": {"error": str(error)[:300]}})
        return jsonify({"error": "store_refused", "message": "the database refused a value of this request"}), 400

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException):
        if isinstance(error, RequestEntityTooLarge):  # MAX_CONTENT_LENGTH: the webhooks' own answer
            return _known(TooLarge(f"the body is larger than {request.max_content_length} bytes"))
        code = (error.name or "error").lower().replace(" ", "_")
        return jsonify({"error": code, "message": error.description}), error.code

    @app.errorhandler(Exception)
    def _unknown(error: Exception):
        log.exception("unhandled error")
        return jsonify({"error": "internal_error"}), 500
