"""Reads wrk's output of bench/run.sh and prints the ratios to the Flask hello floor."""
from __future__ import annotations

import re
import sys

TARGETS = {"read": 0.6, "ingest": 0.35}


def parse(text: str) -> dict[str, dict[str, float]]:
    results = {}
    for block in text.split("== ")[1:]:
        name = block.split("\n", 1)[0].strip()
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", block).group(1))
        value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", block).groups()
        p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", block)
        results[name] = {"rps": rps, "p99_ms": p99, "non_2xx": int(errors.group(1)) if errors else 0}
    return results


def main(path: str, database: str) -> int:
    results = parse(open(path).read())
    floor = results["hello"]
    print(f"database: {database.split('://')[0]}")
    print(f"{'case':8} {'req/s':>9} {'p99 ms':>8} {'non-2xx':>8} {'rps ratio':>10} {'target':>7}")
    failed = False
    for name, figures in results.items():
        ratio = figures["rps"] / floor["rps"]
        target = TARGETS.get(name)
        mark = "" if target is None else ("ok" if ratio >= target else "BELOW")
        failed |= mark == "BELOW" or figures["non_2xx"] > 0
        print(f"{name:8} {figures['rps']:9.0f} {figures['p99_ms']:8.2f} {figures['non_2xx']:8d} "
              f"{ratio:10.2f} {target or '':>7} {mark}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
