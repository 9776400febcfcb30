"""The event log in the admin: recent deliveries, one delivery, and replaying it."""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

from flask import abort, current_app, flash, redirect, render_template, request, url_for

from gateway.domain.catalog import SOURCES
from gateway.domain.events import STATUSES
from gateway.ingest import GONE
from gateway.jobs import retry
from gateway.store.port import MAX_ROW_ID, StoreUnavailable
from gateway.web.admin import bp, row_id_arg

log = logging.getLogger("gateway.admin")

PAGE = 50


def services():
    return current_app.extensions["gateway"]


def _time(name: str) -> datetime | None:
    """A ``datetime-local`` field, read as UTC (the pages show UTC throughout)."""
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        abort(400, f"{name} must be a time like 2026-11-22T10:00")
    return parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _filters() -> dict:
    chosen = {"source": request.args.get("source") or None, "status": request.args.get("status") or None,
              "event_type": request.args.get("type", "").strip() or None,
              "since": _time("since"), "until": _time("until")}
    if chosen["source"] not in (None, *SOURCES) or chosen["status"] not in (None, *STATUSES):
        abort(400, "unknown source or status")
    return chosen


@bp.get("/deliveries")
def deliveries():
    filters = _filters()
    before = row_id_arg("before")
    try:
        with services().store.transaction(readonly=True) as tx:
            found = tx.search_events(**filters, before_pk=before, limit=PAGE + 1)
    except StoreUnavailable:
        abort(503, "the database cannot be read right now")
    older = {**request.args.to_dict(), "before": found[PAGE - 1].id} if len(found) > PAGE else None
    return render_template("admin/deliveries.html", events=found[:PAGE], args=request.args,
                           sources=SOURCES, statuses=STATUSES, older=older)


@bp.get(f"/deliveries/<int(max={MAX_ROW_ID}):event_pk>")
def delivery(event_pk: int):
    try:
        with services().store.transaction(readonly=True) as tx:
            event = tx.get_event(event_pk)
            keys = tx.event_links([event_pk])[event_pk] if event else []
            touched = [(source, key, tx.get_subscription(source, key)) for source, key in keys]
    except StoreUnavailable:
        abort(503, "the database cannot be read right now")
    if event is None:
        abort(404, f"no delivery {event_pk}")
    return render_template("admin/delivery.html", event=event, touched=touched,
                           payload=_pretty_text(event.payload), data=_pretty(event.data))


@bp.post(f"/deliveries/<int(max={MAX_ROW_ID}):event_pk>/replay")
def replay(event_pk: int):
    s = services()
    try:
        with s.store.transaction(readonly=True) as tx:
            event = tx.get_event(event_pk)
    except StoreUnavailable:
        abort(503, "the database cannot be read right now")
    if event is None:
        abort(404, f"no delivery {event_pk}")
    outcomes = retry.replay(s.ingest, s.providers, [event])
    outcome = ", ".join(sorted(outcomes)) or "nothing"
    log.info("admin replay", extra={"fields": {"event_id": event.event_id, "outcome": outcome}})
    if outcome == GONE:  # pruned by the retention meanwhile: there is no page to go back to
        flash(f"Delivery {event_pk} is no longer in the log (the retention deleted it): nothing was replayed.", "warn")
        return redirect(url_for("admin.deliveries"))
    flash(f"Replayed delivery {event_pk}: {outcome}.", "ok" if outcome in ("processed", "ignored") else "warn")
    return redirect(url_for("admin.delivery", event_pk=event_pk))


def _pretty_text(text: str) -> str:
    try:
        return _pretty(json.loads(text))
    except ValueError:
        return text


def _pretty(value) -> str:
    if value is None:
        return ""
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)
