"""Structured logs: one JSON object per line; ``extra={"fields": {...}}`` adds keys."""
from __future__ import annotations

import contextvars
import json
import logging
from datetime import datetime, timezone


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(level: str) -> None:
    root = logging.getLogger("gateway")
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.setLevel(level)


# The users a delivery's changes concerned, for its one log line. A context variable, so
# each gunicorn thread (and each request) sees only its own delivery's users.
_users: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("delivery_users", default=())


def note_users(users):
    """Remember ``users`` for the delivery being handled; returns them unchanged."""
    _users.set(tuple(sorted(users)))
    return users


def forget_users() -> None:
    """Forget the users noted, if any (a set only when there is something to forget: every
    request starts with this)."""
    if _users.get():
        _users.set(())


def take_users() -> list[str]:
    """The users noted since the last call, then forgets them."""
    users = _users.get()
    _users.set(())
    return list(users)
