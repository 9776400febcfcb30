"""``GET /v1/events``: the entitlement feed, paged by position (API key).

Events come in commit order, numbered without gaps (``gateway/store/feed.py``), so a
reader that keeps the ``next`` cursor of each page and asks again from it sees every
event once, whatever commits concurrently. ``wait`` (seconds, at most 25) holds the
request until an event after the cursor exists: a long poll. A waiting request holds one
of the worker's threads (``GUNICORN_THREADS``) while it waits.
"""
from __future__ import annotations

import time

from flask import Blueprint, current_app, jsonify, request

from gateway.domain.entitlement_events import FeedEvent
from gateway.errors import Unavailable
from gateway.store.port import MAX_ROW_ID, Store, StoreUnavailable
from gateway.web.queries import query_number

bp = Blueprint("feed", __name__)

MAX_LIMIT, MAX_WAIT_SECONDS = 1000, 25
#: The long poll asks the database again after this long, doubling up to a second.
FIRST_POLL_SECONDS, LAST_POLL_SECONDS = 0.05, 1.0


@bp.get("/v1/events")
def events():
    services = current_app.extensions["gateway"]
    services.api_keys.check(request.headers.get("Authorization"))
    after = query_number("after", 0, 0, MAX_ROW_ID)
    limit = query_number("limit", 100, 1, MAX_LIMIT)
    wait = query_number("wait", 0, 0, MAX_WAIT_SECONDS)
    try:
        found = read_waiting(services.store, after, limit, wait)
    except StoreUnavailable as exc:
        raise Unavailable("the feed cannot be read right now", code="store_unavailable") from exc
    return jsonify({"events": [event.body() for event in found],
                    "next": str(found[-1].position if found else after),
                    "has_more": len(found) == limit})


def read_waiting(store: Store, after: int, limit: int, wait_seconds: float) -> list[FeedEvent]:
    """The events after ``after``; when there are none, asked again until ``wait_seconds``."""
    deadline = time.monotonic() + wait_seconds
    pause = FIRST_POLL_SECONDS
    while True:
        with store.transaction(readonly=True) as tx:
            found = tx.read_feed(after, limit)
        left = deadline - time.monotonic()
        if found or left <= 0:
            return found
        time.sleep(min(pause, left))
        pause = min(pause * 2, LAST_POLL_SECONDS)
