"""How long an invocation may still spend on network calls.

Amazon Cognito invokes a trigger synchronously, waits 5 seconds, and retries a failed or
timed-out call, up to three attempts in all
(https://docs.aws.amazon.com/cognito/latest/developerguide/cognito-user-pools-working-with-lambda-triggers.html).
Every call a handler makes takes its timeout from a ``Deadline``, so the sum cannot pass it.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

#: Lambda's remaining time is measured to the function's own timeout; stop short of it.
SAFETY_MARGIN = 0.25
#: Below this a call cannot succeed, so it is not started.
SHORTEST_CALL = 0.05


class OutOfTime(Exception):
    """Not enough of the invocation's budget is left to start a call."""


class Deadline:
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._end = clock() + seconds

    @classmethod
    def for_invocation(cls, context, budget: float) -> "Deadline":
        remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
        if remaining_ms is None:
            return cls(budget)
        return cls(min(budget, remaining_ms() / 1000 - SAFETY_MARGIN))

    def remaining(self) -> float:
        return max(0.0, self._end - self._clock())

    def allow(self, seconds: float, reserve: float = 0.0) -> float:
        """Timeout for the next call: at most ``seconds``, keeping ``reserve`` for the calls after it."""
        left = self.remaining() - reserve
        if left < SHORTEST_CALL:
            raise OutOfTime(f"{self.remaining():.2f}s left, {reserve:.2f}s reserved")
        return min(seconds, left)

    def require(self, seconds: float) -> None:
        """Refuse to start a call whose own timeouts add up to ``seconds`` if they could overrun."""
        if self.remaining() < seconds:
            raise OutOfTime(f"{self.remaining():.2f}s left, {seconds:.2f}s needed")


def within(seconds: float, call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)``, or ``OutOfTime`` once ``seconds`` have passed, whatever the call is
    doing. Socket timeouts bound each read, not a whole call: a server that answers one byte
    at a time never trips them. A call still running is left to finish on its own thread
    (Lambda freezes it with the container) and its result is dropped; every call made this
    way is idempotent."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call(*args)
        except BaseException as error:  # noqa: BLE001 - handed to the caller below
            outcome["error"] = error

    worker = threading.Thread(target=run, name="trigger-call", daemon=True)
    worker.start()
    worker.join(max(0.0, seconds))
    if worker.is_alive():
        raise OutOfTime(f"no answer within {seconds:.2f}s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
