"""Where a delivery's CPU goes: a CPU timer around the functions of each stage, for
bench/delivery_cpu.py.

Each stage's time is its own (exclusive): a stage's function that calls another
stage's (a translation fetching from a store's API, a lookup's transaction) hands that
time to the other stage. What no stage claims is Flask's and werkzeug's request and
response handling, the view, and the hooks around it. The timers cost CPU of their own
(two clock reads a call); the table says how much, and the pass without them (the
headline figure) is the one to quote.
"""
from __future__ import annotations

import importlib
import time
from collections import defaultdict

BODY, PARSE, FETCH, DRIVER, STORE, OBSERVE = (
    "read body + signature/auth check", "parse + validate + translate", "store API call (loopback fake)",
    "transaction: psycopg send/receive", "transaction: the rest", "metrics + logging")
REST = "Flask request + response (the rest)"

# (module, class or None, function names, stage)
TARGETS = [
    ("gateway.web.webhooks", None, ["read_body"], BODY),
    ("gateway.providers.revenuecat_events", "RevenueCatEvents", ["verify"], BODY),
    ("gateway.providers.stripe_events", "StripeEvents", ["verify"], BODY),
    ("gateway.providers.google_play_notifications", "GooglePlayNotifications", ["verify"], BODY),
    ("gateway.providers.apple_notifications", "AppleNotifications", ["verify"], BODY),
    ("gateway.providers.wire", None, ["parse_object"], PARSE),
    ("gateway.providers.revenuecat_events", None, ["_load"], PARSE),
    ("gateway.providers.revenuecat_events", "RevenueCatEvents", ["translate_event"], PARSE),
    ("gateway.providers.stripe_webhook", None, ["parse"], PARSE),
    ("gateway.providers.stripe_events", "StripeEvents", ["translate"], PARSE),
    ("gateway.providers.google_play_messages", None, ["parse_push"], PARSE),
    ("gateway.providers.google_play_notifications", "GooglePlayNotifications", ["translate"], PARSE),
    ("gateway.providers.apple_notifications", "AppleNotifications", ["translate_data"], PARSE),
    ("gateway.ingest", None, ["storable"], PARSE),
    ("gateway.providers.google_play_api", "PlayHttpApi", ["subscription"], FETCH),
    ("gateway.group_commit", "GroupCommit", ["submit"], STORE),
    ("gateway.ingest", "Ingest", ["_record", "process"], STORE),
    ("gateway.ingest", "StoreLookup", ["subscription", "resolve"], STORE),
    ("gateway.store.driver", "Pipeline", ["send", "rows", "first_values", "sync"], DRIVER),
    ("gateway.metrics", None, ["observe_delivery", "observe_request", "observe_refusal",
                               "observe_cache_lookup"], OBSERVE),
    ("gateway.logs", None, ["note_users", "take_users"], OBSERVE),
    ("logging", "Logger", ["debug", "info", "warning", "error", "exception"], OBSERVE),
]


class Timers:
    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)
        self.calls = 0
        self._stack: list[float] = []  # per open timer: its callees' time

    def wrap(self, fn, stage: str):
        clock, stack, spent = time.process_time, self._stack, self.spent

        def timed(*args, **kwargs):
            self.calls += 1
            started = clock()
            stack.append(0.0)
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = clock() - started
                spent[stage] += elapsed - stack.pop()
                if stack:
                    stack[-1] += elapsed
        return timed


def _install(timers: Timers) -> list[tuple[object, str, object]]:
    undo = []
    for module_name, class_name, names, stage in TARGETS:
        owner = importlib.import_module(module_name)
        owner = getattr(owner, class_name) if class_name else owner
        for name in names:
            original = owner.__dict__[name] if class_name else getattr(owner, name)
            undo.append((owner, name, original))
            setattr(owner, name, timers.wrap(original, stage))
    return undo


def measure(app, calls: list, deliver) -> tuple[dict[str, float], float, float]:
    """(CPU us per delivery by stage, the whole, the timers' own cost) over ``calls``."""
    del app  # the targets are patched where they are defined, for every app of the process
    timers = Timers()
    undo = _install(timers)
    try:
        started = time.process_time()
        for call in calls:
            deliver(call)
        whole = time.process_time() - started
    finally:
        for owner, name, original in reversed(undo):
            setattr(owner, name, original)
    per = {stage: seconds / len(calls) * 1e6 for stage, seconds in timers.spent.items()}
    return per, whole / len(calls) * 1e6, timers.calls / len(calls) * _timer_cost()


def _timer_cost() -> float:
    """CPU microseconds one timer adds to a call."""
    calls = range(20000)
    plain, timed = (lambda: None), Timers().wrap(lambda: None, "x")
    spent = []
    for fn in (plain, timed):
        started = time.process_time()
        for _ in calls:
            fn()
        spent.append(time.process_time() - started)
    return max(0.0, (spent[1] - spent[0]) / len(calls) * 1e6)


def report(measured: tuple[dict[str, float], float, float], plain: float) -> None:
    per, whole, overhead = measured
    rows = [(stage, per.get(stage, 0.0)) for stage in (BODY, PARSE, FETCH, DRIVER, STORE, OBSERVE)]
    rows.append((REST, whole - sum(per.values())))
    print(f"stages, one pass with timers (whole {whole:.0f} us; the timers' own share about {overhead:.0f} us;"
          f" without timers {plain:.0f} us):")
    for stage, us in rows:
        print(f"  {stage:40} {us:7.0f} us  {us / whole:5.0%}")

