"""``/admin``: server-rendered operator pages behind ``ADMIN_PASSWORD``.

Every request passes ``_guard``: the admin must be configured, the caller signed in
(except on the login page), and every POST must carry the session's CSRF token. The
session is Flask's signed cookie, scoped to ``/admin``, keyed by ``ADMIN_SECRET_KEY``
(required with the password, so sessions hold across gunicorn workers and restarts).
"""
from __future__ import annotations

import dataclasses
import time
from datetime import timedelta

from flask import Blueprint, Flask, abort, current_app, redirect, render_template, request, session, url_for
from werkzeug.exceptions import HTTPException

from gateway.config import Settings
from gateway.store.login_attempts import LoginAttempts
from gateway.store.port import MAX_ROW_ID
from gateway.web.admin_security import (AdminSessionInterface, LoginThrottle, Password, csrf_problem,
                                        csrf_token)

bp = Blueprint("admin", __name__, url_prefix="/admin", template_folder="templates")
SIGNED_IN, SIGNED_IN_AT = "admin", "admin_since"
OPEN_ENDPOINTS = {"admin.login"}


@dataclasses.dataclass
class AdminState:
    password: Password
    throttle: LoginThrottle


def install(app: Flask, settings: Settings) -> None:
    """Register the pages; configure the session only when the admin is enabled."""
    from gateway.web import admin_deliveries, admin_login, admin_users, admin_webhooks  # noqa: F401  (their routes)

    app.register_blueprint(bp)
    app.extensions["gateway_admin"] = None
    if not settings.admin_password:
        return
    app.secret_key = settings.admin_secret_key
    app.config.update(
        SESSION_COOKIE_NAME="gateway_admin", SESSION_COOKIE_PATH="/admin",
        SESSION_COOKIE_HTTPONLY=True,
        # Lax, not Strict: a link to a user's page from a ticket opens signed in. Every
        # state change is a POST with a CSRF token, which Lax never sends cross-site anyway.
        SESSION_COOKIE_SAMESITE="Lax", PERMANENT_SESSION_LIFETIME=timedelta(hours=8),
        SESSION_REFRESH_EACH_REQUEST=False,  # eight hours from sign-in, however busy
    )
    app.session_interface = AdminSessionInterface(settings.admin_cookie_secure)
    password = Password(settings.admin_password, settings.admin_secret_key)
    attempts = LoginAttempts.of(app.extensions["gateway"].store)
    app.extensions["gateway_admin"] = AdminState(password, LoginThrottle(attempts))


def state() -> AdminState:
    return current_app.extensions["gateway_admin"]


def signed_in() -> bool:
    """Signed in with the current password, less than the session's lifetime ago. Counted
    from the sign-in, not by the cookie's own age: Flask signs the cookie again, stamped
    anew, whenever the session changes (a flash message), which would keep it alive."""
    since = session.get(SIGNED_IN_AT)
    return (session.get(SIGNED_IN) == state().password.fingerprint and isinstance(since, int)
            and 0 <= time.time() - since < current_app.permanent_session_lifetime.total_seconds())


@bp.before_request
def _guard():
    if state() is None:
        return render_template("admin/disabled.html"), 503
    if request.endpoint not in OPEN_ENDPOINTS and not signed_in():
        return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))
    if request.method == "POST":
        problem = csrf_problem()
        if problem:
            abort(problem, "the form's CSRF token is missing or stale: reload the page and try again")
    return None


@bp.context_processor
def _template_helpers():
    return {"csrf_token": csrf_token, "signed_in": signed_in() if state() else False}


@bp.after_request
def _headers(response):
    # Pages show payloads and user ids: never cached, never framed, no outside resources.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
    return response


@bp.errorhandler(HTTPException)
def _error(error: HTTPException):
    return render_template("admin/error.html", error=error), error.code


def row_id_arg(name: str) -> int | None:
    """A query argument naming a row id, or None when absent or not a valid one."""
    raw = request.args.get(name, "")
    # len(): int() raises ValueError past 4,300 digits; MAX_ROW_ID has 19.
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 19 and 0 < int(raw) <= MAX_ROW_ID else None
