"""Signing in and out of the admin."""
from __future__ import annotations

import logging
import secrets
import time

from flask import abort, redirect, render_template, request, session, url_for

from gateway.store.port import StoreUnavailable
from gateway.web.admin import SIGNED_IN, SIGNED_IN_AT, bp, signed_in, state
from gateway.web.admin_security import CSRF_FIELD

log = logging.getLogger("gateway.admin")


def _next_page() -> str:
    """Where to go after signing in: only a path of the admin, never another site."""
    target = request.values.get("next", "")
    if target.startswith("/admin") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("admin.deliveries")


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        if signed_in():
            return redirect(_next_page())
        return render_template("admin/login.html", next=_next_page(), error=None)
    address = request.remote_addr or "unknown"
    throttle = state().throttle
    try:
        admitted = throttle.admit(address)
    except StoreUnavailable:  # no count, no comparison: a guesser must not outlast an outage
        abort(503, "the database cannot be reached to count sign-in attempts: try again shortly")
    if not admitted:
        log.warning("admin login throttled", extra={"fields": {"address": address}})
        return render_template("admin/login.html", next=_next_page(),
                               error="Too many failed attempts. Wait a few minutes."), 429
    if not state().password.matches(request.form.get("password", "")):
        log.warning("admin login failed", extra={"fields": {"address": address}})
        return render_template("admin/login.html", next=_next_page(), error="Wrong password."), 401
    try:
        throttle.succeeded(address)
    except StoreUnavailable:  # the count lapses with its window all the same
        log.warning("admin login count not cleared", extra={"fields": {"address": address}})
    # A fresh session on every sign-in: nothing from before it (a planted token) survives.
    session.clear()
    session.permanent = True
    session[SIGNED_IN] = state().password.fingerprint
    session[SIGNED_IN_AT] = int(time.time())
    session[CSRF_FIELD] = secrets.token_urlsafe(32)
    log.info("admin signed in", extra={"fields": {"address": address}})
    return redirect(_next_page())


@bp.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("admin.login"))
