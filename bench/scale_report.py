"""``make bench-scale``'s report: every target with its figure, from what ``bench/scale.sh``
wrote to its results directory; 1 when a target is missed or an answer was not 2xx.

Targets (bench/README.md says why these):

- no sequential scan of a table over 100,000 rows in any hot statement's plan;
- the entitlement read at scale serves at least 0.9 of what ``read-bare`` (bare Flask and
  the same query) serves at scale, the median of the rounds' ratios (each round's read
  divided by the same round's read-bare);
- the heavy user's (1,000 deliveries) history API and admin page: p99 at most 100 ms.
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from bench.report import parse
from bench.scale_explain import BIG

READ_OF_BARE, PAGE_P99_MS = 0.9, 100.0
GIB = 2**30


def report(results: Path) -> int:
    load = json.loads((results / "load.json").read_text())
    missed: list[str] = []
    print(f"== bench-scale: {load['users']:,} users, {load['subscriptions']:,} subscriptions, {load['events']:,} "
          f"deliveries, {load['entitlement_events']:,} feed events, {load['webhook_deliveries']:,} webhook "
          f"deliveries; loaded at {load.get('commit')} in {load['load_seconds']:,} s; mix {load['mix']}")
    missed += _rounds(results / "rounds.txt")
    missed += _latency(json.loads((results / "latency.json").read_text()))
    missed += _explain(json.loads((results / "explain.json").read_text()))
    _size(json.loads((results / "size.json").read_text()))
    if (results / "feed_prune.json").exists():  # SCALE_FEED_PRUNE=1
        missed += _feed_prune(json.loads((results / "feed_prune.json").read_text()))
    print("\n" + ("targets missed: " + "; ".join(missed) if missed else "every target met"))
    return 1 if missed else 0


def _rounds(path: Path) -> list[str]:
    results = parse(path.read_text())
    floors = [r["rps"] for r in results["hello"]]
    print(f"\nrounds: {len(floors)} (wrk, 16 connections, cases taking turns)")
    print(f"{'case':10} {'req/s, each round':>30} {'p99 ms':>7} {'non-2xx':>8} {'/ hello, each round':>26} "
          f"{'median':>7}  CPU ms per request, workers / PostgreSQL")
    missed = []
    for name, rounds in results.items():
        ratios = [r["rps"] / floor for r, floor in zip(rounds, floors)]
        errors = sum(r["non_2xx"] for r in rounds)
        if errors:
            missed.append(f"{name}: {errors} answers not 2xx")
        cpu = " ".join(f"{_ms(r['worker_ms'])}/{_ms(r['postgres_ms'])}" for r in rounds)
        rps = " ".join(f"{r['rps']:.0f}" for r in rounds)
        print(f"{name:10} {rps:>30} "
              f"{statistics.median(r['p99_ms'] for r in rounds):7.1f} {errors:8d} "
              f"{' '.join(f'{x:.2f}' for x in ratios):>26} {statistics.median(ratios):7.2f}  {cpu}")
    if "read" in results and "read-bare" in results:
        of_bare = [r["rps"] / b["rps"] for r, b in zip(results["read"], results["read-bare"])]
        median = statistics.median(of_bare)
        ok = median >= READ_OF_BARE
        print(f"\ntarget: read / read-bare at scale >= {READ_OF_BARE}: each round "
              f"{' '.join(f'{x:.2f}' for x in of_bare)}, median {median:.2f}: {'ok' if ok else 'MISSED'}")
        if not ok:
            missed.append(f"read / read-bare {median:.2f} < {READ_OF_BARE}")
    return missed


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def _latency(found: dict) -> list[str]:
    missed = []
    print(f"\nthe heavy user ({found['user']}, 1,000 deliveries), one request at a time:")
    for name, label in (("history", "GET /v1/users/<sub>/history (100 deliveries a page)"),
                        ("admin", "admin user page (GET /admin/users?sub=)")):
        m = found[name]
        ok = m["p99_ms"] <= PAGE_P99_MS
        print(f"target: {label}: p99 <= {PAGE_P99_MS:.0f} ms: p50 {m['p50_ms']} ms, p99 {m['p99_ms']} ms, "
              f"max {m['max_ms']} ms over {m['requests']}: {'ok' if ok else 'MISSED'}")
        if not ok:
            missed.append(f"{name} p99 {m['p99_ms']} ms > {PAGE_P99_MS:.0f}")
    return missed


def _explain(found: dict) -> list[str]:
    missed = []
    print(f"\nEXPLAIN (ANALYZE, BUFFERS) of every hot statement (target: no sequential scan of a table over {BIG:,} "
          "rows, nor an index scan filtering out as many; 'prepared': the plan on its sixth run on a connection, "
          "once psycopg has prepared it, 'generic' when PostgreSQL chose its plan for any parameters):")
    path = None
    for s in found["statements"]:
        if s["path"] != path:
            path = s["path"]
            print(f"-- {path}: {found['asked'].get(path, '')}")
        if "error" in s:
            print(f"   ERROR {s['error']}: {s['sql'][:100]}")
            missed.append(f"{path}: a statement could not be explained")
            continue
        prepared = s.get("prepared") or {}
        scans = s["seq_scans"] + [f"{t} (prepared)" for t in prepared.get("seq_scans", [])]
        verdict = "MISSED" if scans else "ok"
        if scans:
            missed.append(f"{path}: {'; '.join(scans)}")
        how = ", ".join(sorted({f"{n['node']} {n['index'] or n['relation']}" for n in s["nodes"]
                                if n["relation"] or n["index"]}))
        extra = (f", prepared {prepared['ms']} ms{' (generic)' if prepared.get('generic') else ''}"
                 if "ms" in prepared else f", prepared: {prepared['error']}" if "error" in prepared else "")
        note = f", rows filtered out {s['most_removed']:,}" if s["most_removed"] else ""
        print(f"   {verdict:6} {s['ms']:9.3f} ms{extra}, {s['buffers']:,} buffers{note}: {how or '-'}\n"
              f"          {s['sql'][:150]}")
        for scan in scans:
            print(f"          !! {scan}")
    return missed


def _feed_prune(found: dict) -> list[str]:
    from bench.scale_prune import summary

    print("\nthe feed's retention on the loaded feed (SCALE_FEED_PRUNE=1), with a writer and readers beside it:")
    print("\n".join("   " + line for line in summary(found)))
    return [f"feed prune: {name} failed" for name in found["failures"]]


def _size(found: dict) -> None:
    users = found["users"]
    print(f"\nsize: database {found['database'] / GIB:.2f} GiB for {users:,} users: "
          f"{found['per_million_users'] / GIB:.2f} GiB per million users")
    for name, t in found["tables"].items():
        if t["total"] >= 2**20:
            print(f"   {name:20} {t['total'] / GIB:7.2f} GiB (heap {t['heap'] / GIB:.2f}, TOAST {t['toast'] / GIB:.2f}, "
                  f"indexes {t['indexes'] / GIB:.2f}), {t['rows']:,} rows, {t['total'] / max(t['rows'], 1):,.0f} B a row")
    print("   stored per delivery (a sample of the log): " + "; ".join(
        f"{source} payload {d['payload_bytes']:,} B + data {d['data_bytes']:,} B"
        for source, d in found["stored_per_delivery"].items()))
