"""What operators see of each request: one JSON access line, HTTP metrics, ``/metrics``.

The access line names the route template (``/v1/users/<user_sub>/entitlements``), never
the query string or a header, so no token can reach the logs through it; the user is
the verified Cognito ``sub`` or the ``<user_sub>`` of an API-key read that passed.
"""
from __future__ import annotations

import hmac
import logging
import time

from flask import Blueprint, Flask, Request, Response, current_app, g, request

from gateway import logs, metrics
from gateway.auth import bearer
from gateway.errors import NotConfigured, Unauthorized

log = logging.getLogger("gateway.access")
bp = Blueprint("metrics", __name__)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Entitlement read endpoints, by the short name their metric carries.
READ_ENDPOINTS = {"entitlements.mine": "me", "entitlements.of_user": "user"}


@bp.get("/metrics")
def scrape():
    services = current_app.extensions["gateway"]
    token = services.settings.metrics_token
    if not token:
        # Disabled, as the server API is without GATEWAY_API_KEYS: the gateway faces the
        # internet (its webhooks), and the counts by delivery type are the business's.
        raise NotConfigured("metrics are disabled: set METRICS_TOKEN and scrape with it as a bearer token",
                            code="metrics_not_configured")
    if not hmac.compare_digest(bearer(request.headers.get("Authorization")).encode(), token.encode()):
        raise Unauthorized("unknown metrics token", code="invalid_metrics_token")
    return Response(metrics.exposition(services.store, services.settings), mimetype="text/plain; version=0.0.4")


class _NotingCognito:
    """The app's Cognito verifier, remembering the verified ``sub`` for the access line."""

    def __init__(self, inner) -> None:
        self._inner = inner

    def user_sub(self, authorization):
        g.user_sub = self._inner.user_sub(authorization)
        return g.user_sub

    def __getattr__(self, name):
        return getattr(self._inner, name)


class TimedRequest(Request):
    """Flask's request, its clock started when Flask makes it, before routing.

    A ``before_request`` hook keeping the start in ``g`` cost an entitlement read some
    20,000 instructions (the hook's call, a write and a read through the ``g`` proxy;
    bench/README.md); ``_finish`` reads the request object anyway."""

    def __init__(self, *args, **kwargs) -> None:
        self.started = time.perf_counter()
        logs.forget_users()  # a thread serves many requests: start each without a stale note
        super().__init__(*args, **kwargs)


def install(app: Flask) -> None:
    services = app.extensions["gateway"]
    services.cognito = _NotingCognito(services.cognito)
    metrics.configure(services.settings.metrics_flush_ms)
    app.register_blueprint(bp)
    app.request_class = TimedRequest
    app.after_request(_finish)


def _finish(response: Response) -> Response:
    req = request._get_current_object()  # read once: each read through the proxy costs a lookup
    seconds = time.perf_counter() - req.started
    rule = req.url_rule
    route = rule.rule if rule else "unmatched"
    if route == "/metrics":
        return response  # scrapes every few seconds would drown the lines that matter
    status = response.status_code
    error = _error_code(response) if status >= 400 else None  # a success has none: its body is not read
    method = req.method if req.method in METHODS else "OTHER"  # any token reaches us: bound the label
    endpoint = rule.endpoint if rule else None
    if endpoint in READ_ENDPOINTS:
        metrics.observe_request(method, route, status, seconds, (READ_ENDPOINTS[endpoint], error or "ok"))
    else:
        metrics.observe_request(method, route, status, seconds)
    if endpoint == "webhooks.receive" and error and status != 404:
        metrics.observe_refusal((req.view_args or {}).get("source", ""), error)
    if not log.isEnabledFor(logging.INFO):
        return response
    fields = {"method": req.method, "path": route, "status": status, "ms": round(seconds * 1000, 1)}
    user = _user(response, req)
    if user:
        fields["user"] = user
    if error:
        fields["error"] = error
    log.info("request", extra={"fields": fields})
    return response


def _error_code(response: Response) -> str | None:
    if not response.is_json:
        return None
    body = response.get_json(silent=True)
    return body.get("error") if isinstance(body, dict) else None


def _user(response: Response, req) -> str | None:
    if "user_sub" in g:
        return g.user_sub
    if response.status_code < 400:  # an API-key read that passed names its user in the path
        return (req.view_args or {}).get("user_sub")
    return None
