"""Structured logs for the triggers: one JSON object per line on stderr.

Lambda forwards each stderr line to CloudWatch Logs as one event, so a JSON line is one
searchable record. ``extra={"fields": {...}}`` adds keys. Callers log the user's sub, never a
key; as a second guard every line is scrubbed of anything shaped like a Stripe key.
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import datetime, timezone

ROOT = "cognito_triggers"
_STRIPE_KEY = re.compile(r"\b(sk|rk|pk)_(live|test)_[A-Za-z0-9]+")


def scrub(text: str) -> str:
    return _STRIPE_KEY.sub(r"\1_\2_[redacted]", text)


def describe(error: BaseException) -> dict[str, object]:
    """What to log about a failed call: its kind, Stripe's HTTP status and code when it has them."""
    return {"error": type(error).__name__, "detail": scrub(str(error))[:300],
            "http_status": getattr(error, "http_status", None), "code": getattr(error, "code", None)}


class JsonLines(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        line = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            line["exception"] = logging.Formatter().formatException(record.exc_info)
        # sys.stderr is looked up per record, not bound once, so a test's capture sees it.
        sys.stderr.write(scrub(json.dumps(line, default=str)) + "\n")


def configure() -> None:
    """Route the package's logs to JSON lines only, not also through the Lambda runtime's root handler."""
    root = logging.getLogger(ROOT)
    if not any(isinstance(handler, JsonLines) for handler in root.handlers):
        root.addHandler(JsonLines())
        root.propagate = False
    # An empty or unknown LOG_LEVEL must not raise: the handler's caller is a sign-up or sign-in.
    level = os.environ.get("LOG_LEVEL", "").strip().upper()
    root.setLevel(level if isinstance(logging.getLevelName(level), int) else logging.INFO)
