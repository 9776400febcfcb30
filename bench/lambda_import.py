"""Cold-start cost of the Cognito trigger handlers: the time to import each one in a fresh
interpreter, as Lambda does on a new container. Target: under 300 ms each.

    .venv/bin/python bench/lambda_import.py [--runs 10]

Prints the best and the median of the runs per handler; exits 1 when a best is over target.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HANDLERS = ["cognito_triggers.post_confirmation", "cognito_triggers.pre_token_generation"]
TARGET_SECONDS = 0.3


def import_seconds(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    return float(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    over = False
    print(f"{'handler':40} {'best ms':>8} {'median ms':>10} {'target ms':>10}")
    for module in HANDLERS:
        times = [import_seconds(module) for _ in range(runs)]
        best = min(times)
        over |= best >= TARGET_SECONDS
        print(f"{module:40} {best * 1000:8.0f} {statistics.median(times) * 1000:10.0f} {TARGET_SECONDS * 1000:10.0f}"
              f" {'ok' if best < TARGET_SECONDS else 'OVER'}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
