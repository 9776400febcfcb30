"""One delivery at a time, as tests write and look them up: the store's port records a
list of deliveries and searches the event log."""
from __future__ import annotations


def record_event(tx, **fields):
    """``tx.record_events([fields])``'s one answer: the event, or ``None`` for a duplicate."""
    (event,) = tx.record_events([fields])
    return event


def find_event(tx, source: str, event_id: str):
    """The recorded delivery of this source and id, or ``None``."""
    found = tx.search_events(source=source, event_id=event_id, limit=1)
    return found[0] if found else None
