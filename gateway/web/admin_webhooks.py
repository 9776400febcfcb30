"""Outgoing webhooks in the admin: the endpoints and their failed deliveries; adding,
changing and disabling an endpoint of the admin's own; replaying failed deliveries. An endpoint the feed's retention has passed is shown behind
the feed, with the command that lets it go on (``Outbox.skip_gap``); a failed delivery
whose event is gone, with the command that drops it (``Outbox.drop``).

Endpoints of ``OUTBOUND_WEBHOOKS`` are shown but not changed here: the environment is
their truth, and the worker's next start would undo an edit. Every change is a POST
behind the admin's sign-in and CSRF check (``admin._guard``).
"""
from __future__ import annotations

import dataclasses
import logging
import re

from flask import abort, current_app, flash, redirect, render_template, request, url_for

from gateway.clock import utcnow
from gateway.domain.webhooks import ADMIN, FAILED, STATUSES, Endpoint
from gateway.outbound.endpoints import endpoint as valid_endpoint
from gateway.store.outbox import EndpointTaken, Outbox
from gateway.store.port import StoreUnavailable
from gateway.web.admin import bp

log = logging.getLogger("gateway.admin")


def _outbox() -> Outbox:
    return Outbox.of(current_app.extensions["gateway"].store)


def _held(outbox: Outbox, name: str) -> Endpoint | None:
    return next((e for e in outbox.endpoints() if e.name == name), None)


@bp.get("/webhooks")
def webhooks():
    outbox = _outbox()
    try:
        endpoints, counts, behind = outbox.endpoints(), outbox.counts(), outbox.behind()
        failed = outbox.deliveries(status=FAILED, limit=100)
    except StoreUnavailable:
        abort(503, "the database cannot be read right now")
    return render_template("admin/webhooks.html", endpoints=endpoints, counts=counts, failed=failed,
                           behind=behind, statuses=STATUSES, admin_origin=ADMIN)


@bp.post("/webhooks")
def save_webhook():
    form, outbox = request.form, _outbox()
    name = form.get("name", "").strip()
    held = _held(outbox, name)
    secrets = [s for s in re.split(r"[\s,]+", form.get("secrets", "")) if s]
    if not secrets and held is not None:
        secrets = list(held.secrets)  # left blank: keep them
    types = [t for t in re.split(r"[\s,]+", form.get("types", "")) if t] or None
    try:
        endpoint = valid_endpoint(name, form.get("url", "").strip(), secrets, types, origin=ADMIN,
                                  allow_private=current_app.extensions["gateway"].settings.outbound_allow_private_targets)
    except ValueError as exc:
        abort(400, f"Not saved: {exc}")
    return _saved(outbox, endpoint, "Saved" if held else "Added")


@bp.post("/webhooks/<name>/enabled")
def enable_webhook(name: str):
    outbox = _outbox()
    held = _held(outbox, name)
    if held is None:
        abort(404, f"no endpoint {name}")
    enabled = request.form.get("enabled") == "1"
    return _saved(outbox, dataclasses.replace(held, enabled=enabled), "Enabled" if enabled else "Disabled")


def _saved(outbox: Outbox, endpoint: Endpoint, done: str):
    """Save an admin endpoint, say so, and go back to the page."""
    try:
        outbox.save(endpoint, utcnow())
    except EndpointTaken as exc:
        abort(409, f"{exc}; change it there")
    except StoreUnavailable:
        abort(503, "the database cannot be written right now")
    # Not the URL: some receivers take a token in its query.
    log.info("admin saved webhook endpoint", extra={"fields": {"endpoint": endpoint.name, "done": done}})
    flash(f"{done} endpoint {endpoint.name}.", "ok")
    return redirect(url_for("admin.webhooks"))


@bp.post("/webhooks/<name>/replay")
def replay_webhooks(name: str):
    outbox = _outbox()
    count, left = outbox.replay(utcnow(), endpoint=name), len(outbox.unsendable(name))
    log.info("admin replayed webhooks", extra={"fields": {"endpoint": name, "count": count}})
    flash(f"Replaying {count} failed {'delivery' if count == 1 else 'deliveries'} of {name}."
          + (f" {left} cannot be sent (event deleted): see below." if left else ""), "ok")
    return redirect(url_for("admin.webhooks"))
