"""Reads wrk's output of bench/run.sh, prints each case's ratio to the Flask hello floor,
and each target with its figure.

The output holds rounds (``== hello 1``, ``== ingest 1``, ``== read 1``, ``== read-uncached 1``,
``== hello 2``...); each case is divided by the hello of its own round, and the verdict is
the median round's. On PostgreSQL two bounds come with them: ``read-bare`` (bare Flask
asking PostgreSQL once per request, ``bench/hello_read.py``), which the uncached read is
judged against, ``ingest-sql`` (a delivery's SQL alone, sent by pgbench:
``bench/delivery_sql.py``) and ``ingest-psycopg`` (the same SQL sent by psycopg alone,
waiting where a gateway must: the client CPU per delivery), which with the hello's worker
CPU of the same round is the least a delivery can cost a worker, printed under the ingest
target's line.
"""
from __future__ import annotations

import math
import re
import statistics
import sys

#: Ratios of req/s, each against a case of the same round: ``read`` is the gateway as
#: deployed (on PostgreSQL its entitlement cache is on by default), ``read-uncached`` the
#: same reads with ENTITLEMENT_CACHE_SECONDS=0, judged against bare Flask asking the same
#: SELECT (on SQLite, where there is no read-bare, it has no target).
RATIO_TARGETS = {"read": ("hello", 0.6), "read-uncached": ("read-bare", 0.9)}
#: CPU milliseconds the gunicorn workers spend per request, at most (median round).
CPU_TARGETS = {"ingest": 0.8}


def _wrk(block: str) -> tuple[float, float, int, int]:
    """req/s, p99 ms, non-2xx answers and requests of one wrk run."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", block).group(1))
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", block).groups()
    p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", block)
    requests = int(re.search(r"(\d+) requests in", block).group(1))
    return rps, p99, int(errors.group(1)) if errors else 0, requests


def _pgbench(block: str) -> tuple[float, float, int, int]:
    """The same of one pgbench run: transactions per second; failures count as non-2xx;
    pgbench gives no percentile without a log, so p99 is not known."""
    tps = float(re.search(r"tps = ([\d.]+)", block).group(1))
    failed = re.search(r"number of failed transactions: (\d+)", block)
    done = int(re.search(r"number of transactions actually processed: (\d+)", block).group(1))
    return tps, float("nan"), int(failed.group(1)) if failed else 0, done


def bound(sql_ratio: float) -> float:
    """The ratio a gateway could reach that cost a hello plus a delivery's SQL and nothing
    else: on a saturated machine, times per request add up, and so do their inverses."""
    return 1 / (1 + 1 / sql_ratio)


#: The case that measures, in the run, a delivery's SQL sent by psycopg alone, waiting
#: where a gateway must (``bench/delivery_sql.py --psycopg --waits``): CPU, not req/s.
PSYCOPG = "ingest-psycopg"


def psycopg_ms(text: str) -> list[float]:
    """The client CPU ms per delivery of each round's ``PSYCOPG`` case."""
    return [float(re.search(r"psycopg client CPU per delivery: ([\d.]+) us", block).group(1)) / 1000
            for block in text.split("== ")[1:] if block.split()[0] == PSYCOPG]


def parse(text: str) -> dict[str, list[dict[str, float]]]:
    """Each case's figures, one entry per round, in round order (``PSYCOPG`` apart)."""
    results: dict[str, list[dict[str, float]]] = {}
    for block in text.split("== ")[1:]:
        name = block.split("\n", 1)[0].strip().split()[0]
        if name == PSYCOPG:
            continue
        if "tps = " not in block and "Requests/sec" not in block:
            raise ValueError(f"case {name!r} has no result:\n{block.strip()}")
        rps, p99, non_2xx, requests = (_pgbench if "tps = " in block else _wrk)(block)
        cpu = re.search(r"CPU ticks: workers (\d+) postgres (\d+) per (\d+)/s", block)
        worker_ms, postgres_ms = ((int(cpu.group(i)) / int(cpu.group(3)) * 1000 / max(requests, 1) for i in (1, 2))
                                  if cpu else (float("nan"), float("nan")))
        results.setdefault(name, []).append(
            {"rps": rps, "p99_ms": p99, "non_2xx": non_2xx, "worker_ms": worker_ms, "postgres_ms": postgres_ms})
    return results


def _ms(value: float, digits: int = 2) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def main(path: str, database: str) -> int:
    text = open(path).read()
    results = parse(text)
    floors = [r["rps"] for r in results["hello"]]
    print(f"database: {database.split('://')[0]}; rounds: {len(floors)}")
    print(f"{'case':14} {'req/s (each round)':>30} {'p99 ms':>8} {'non-2xx':>8} {'ratios to hello':>24} {'median':>7}")
    cpu_lines = []
    medians: dict[str, float] = {}
    failed = False
    for name, rounds in results.items():
        ratios = [r["rps"] / floor for r, floor in zip(rounds, floors)]
        medians[name] = statistics.median(ratios)
        non_2xx = sum(r["non_2xx"] for r in rounds)
        failed |= non_2xx > 0
        rps = " ".join(f"{r['rps']:.0f}" for r in rounds)
        print(f"{name:14} {rps:>30} {_ms(statistics.median(r['p99_ms'] for r in rounds), 1):>8} {non_2xx:8d} "
              f"{' '.join(f'{x:.2f}' for x in ratios):>24} {medians[name]:7.2f}")
        worker = " ".join(_ms(r["worker_ms"]) for r in rounds)
        postgres = " ".join(_ms(r["postgres_ms"]) for r in rounds)
        cpu_lines.append(f"{name:14} {worker:>30} {postgres:>30}")
    if "ingest-sql" in results:
        sql = medians["ingest-sql"]
        print(f"\ningest-sql: PostgreSQL alone takes deliveries at {sql:.2f} of the hello; a gateway that "
              f"cost a hello plus that SQL, and nothing else, would reach {bound(sql):.2f}")
    print(f"\nCPU ms per request, each round {'gunicorn workers':>12} {'PostgreSQL':>30}")
    print("\n".join(cpu_lines))
    print("\ntargets (median round)")
    for line, missed in targets(results, psycopg_ms(text)):
        print(line)
        failed |= missed
    return 1 if failed else 0


def targets(results: dict[str, list[dict[str, float]]], psycopg: list[float] | None = None) -> list[tuple[str, bool]]:
    """One line per target whose cases ran, and whether it was missed; ``psycopg``: the
    client CPU ms of each round's ``PSYCOPG`` case, the ingest target's bound."""
    lines = []
    for name, (against, target) in RATIO_TARGETS.items():
        if name not in results or against not in results:
            continue
        ratios = [r["rps"] / a["rps"] for r, a in zip(results[name], results[against])]
        median = statistics.median(ratios)
        lines.append((f"  {name} / {against}: {median:.2f} (rounds {' '.join(f'{x:.2f}' for x in ratios)}), "
                      f"target >= {target}: {'ok' if median >= target else 'MISSED'}", median < target))
    for name, target in CPU_TARGETS.items():
        if name not in results:
            continue
        spent = [r["worker_ms"] for r in results[name]]
        median = statistics.median(spent)
        missed = math.isnan(median) or median > target
        lines.append((f"  {name}: {_ms(median)} ms of worker CPU per request (rounds {' '.join(_ms(x) for x in spent)}), "
                      f"target <= {target}: {'MISSED' if missed else 'ok'}", missed))
        if name == "ingest" and psycopg and "hello" in results:
            lines.append((_ingest_bound(median, target, results["hello"], psycopg), False))
    return lines


def _ingest_bound(median: float, target: float, hellos: list[dict[str, float]], psycopg: list[float]) -> str:
    """The least a delivery can cost a worker, measured in the same run: a hello's worker
    CPU (gunicorn, Flask) plus the client CPU of its SQL sent by psycopg alone, waiting
    where a gateway must; and how far the figure and the target are from it."""
    bounds = [hello["worker_ms"] + sql for hello, sql in zip(hellos, psycopg)]
    least = statistics.median(bounds)
    hello, sql = statistics.median(h["worker_ms"] for h in hellos), statistics.median(psycopg)
    verdict = "the target is below it: out of reach here" if target < least else "the target is above it"
    return (f"    bound, this run: {_ms(least)} ms (rounds {' '.join(_ms(x) for x in bounds)}): a hello {_ms(hello)} "
            f"+ its SQL through psycopg alone, waiting where a gateway must, {_ms(sql)}; {verdict}; "
            f"the gateway's own work above it {_ms(median - least)} ms ({median / least:.2f} x the bound)")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
