"""``GET /v1/events``: the entitlement feed, paged by position (API key).

Events come in commit order, numbered without gaps (``gateway/store/feed.py``), so a
reader that keeps the ``next`` cursor of each page and asks again from it sees every
event once, whatever commits concurrently. ``wait`` (seconds, at most 25) holds the
request until an event after the cursor exists: a long poll. A waiting request holds one
of the worker's threads (``GUNICORN_THREADS``) while it waits.

The retention (``FEED_RETENTION_DAYS``) deletes old events. A cursor below the highest
position it deleted would skip them without a word, so it answers 410 ``cursor_expired``:
the reader reads its users' entitlements again and goes on from ``newest``. Without
``after`` the feed starts at the oldest event kept, and never answers 410.
"""
from __future__ import annotations

import time

from flask import Blueprint, current_app, jsonify, request

from gateway.domain.entitlement_events import FeedEvent
from gateway.errors import Gone, Unavailable
from gateway.store.port import MAX_ROW_ID, Store, StoreUnavailable
from gateway.web.queries import query_number

bp = Blueprint("feed", __name__)

MAX_LIMIT, MAX_WAIT_SECONDS = 1000, 25
#: The long poll asks the database again after this long, doubling up to a second.
FIRST_POLL_SECONDS, LAST_POLL_SECONDS = 0.05, 1.0
EXPIRED = ("events after this cursor were deleted by the feed's retention (FEED_RETENTION_DAYS), so reading on "
           "from it would miss changes: read each user's entitlements again (GET /v1/users/<sub>/entitlements), "
           "then read the feed from `newest` (or without `after`, from the oldest event kept)")


@bp.get("/v1/events")
def events():
    services = current_app.extensions["gateway"]
    services.api_keys.check(request.headers.get("Authorization"))
    after = query_number("after", None, 0, MAX_ROW_ID)
    limit = query_number("limit", 100, 1, MAX_LIMIT)
    wait = query_number("wait", 0, 0, MAX_WAIT_SECONDS)
    try:
        start, found = read_waiting(services.store, after, limit, wait)
    except StoreUnavailable as exc:
        raise Unavailable("the feed cannot be read right now", code="store_unavailable") from exc
    return jsonify({"events": [event.body() for event in found],
                    "next": str(found[-1].position if found else start),
                    "has_more": len(found) == limit})


def read_waiting(store: Store, after: int | None, limit: int, wait_seconds: float) -> tuple[int, list[FeedEvent]]:
    """Where the page starts and the events after it; when there are none, asked again
    until ``wait_seconds``. ``after`` None: from the oldest event kept."""
    deadline = time.monotonic() + wait_seconds
    pause = FIRST_POLL_SECONDS
    while True:
        start, found = read(store, after, limit)
        left = deadline - time.monotonic()
        if found or left <= 0:
            return start, found
        time.sleep(min(pause, left))
        pause = min(pause * 2, LAST_POLL_SECONDS)


def read(store: Store, after: int | None, limit: int) -> tuple[int, list[FeedEvent]]:
    """One page after ``after``; ``Gone`` when the retention deleted events after it."""
    while True:
        with store.transaction(readonly=True) as tx:
            start = tx.feed_pruned_through() if after is None else after
            found = tx.read_feed(start, limit)
            # Read after the events: a prune that committed before they were read shows here.
            pruned = tx.feed_pruned_through()
            newest = tx.feed_head()[0] if start < pruned else None
        if newest is None:
            return start, found
        if after is not None:
            raise Gone(EXPIRED, code="cursor_expired", details={"oldest": str(pruned), "newest": str(newest)})
        # No cursor given, and a prune committed between the two reads: start from its end.
