"""A delivery as the event log holds it: what a provider re-reads when it applies one."""
from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

#: What became of a delivery: recorded, applied, of no interest, waiting for a retry, given up.
STATUSES = ("received", "processed", "ignored", "deferred", "failed")
#: Those of a delivery still to be applied, which the holder of its claim may mark.
WAITING = ("received", "deferred")


@dataclasses.dataclass(frozen=True)
class Event:
    id: int
    source: str
    event_id: str
    event_type: str
    received_at: datetime
    payload: str
    data: Any
    status: str
    attempts: int = 0
    last_error: str | None = None
    processed_at: datetime | None = None
    next_attempt_at: datetime | None = None
