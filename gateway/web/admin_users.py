"""The admin's user page ("why premium, why not") and the retry backlog."""
from __future__ import annotations

from flask import abort, redirect, render_template, request, url_for

from gateway.explain import explain
from gateway.clock import utcnow
from gateway.domain.deletion import REPORTED
from gateway.store.port import StoreUnavailable
from gateway.web.admin import bp, row_id_arg
from gateway.web.admin_deliveries import services

BACKLOG = ("deferred", "failed", "received")


@bp.get("/")
def index():
    return redirect(url_for("admin.deliveries"))


@bp.get("/users")
def user():
    user_sub = request.args.get("sub", "").strip()
    if not user_sub:
        return render_template("admin/user.html", user_sub="", found=None)
    now = utcnow()
    before = row_id_arg("before")
    try:
        found = explain(services().store, services().catalog, user_sub, now, before_pk=before)
        with services().store.transaction(readonly=True) as tx:
            report = tx.deletion_report(user_sub)
            late = [row for row in tx.deleted_subscriptions_of(user_sub) if row.outcome != REPORTED] if report else []
    except StoreUnavailable:
        abort(503, "the database cannot be read right now")
    active = {g.name: g.is_active(now) for g in found.grants}
    return render_template("admin/user.html", user_sub=user_sub, found=found, now=now, active=active,
                           status_at={g.name: g.status_at(now).value for g in found.grants},
                           report=report, late=late)


@bp.get("/backlog")
def backlog():
    try:
        with services().store.transaction(readonly=True) as tx:
            counts = tx.count_events(BACKLOG)
            waiting = {status: tx.search_events(status=status, limit=100) for status in BACKLOG}
    except StoreUnavailable:
        abort(503, "the database cannot be read right now")
    totals = {status: sum(n for (_, st), n in counts.items() if st == status) for status in BACKLOG}
    return render_template("admin/backlog.html", counts=counts, totals=totals, waiting=waiting,
                           statuses=BACKLOG)
