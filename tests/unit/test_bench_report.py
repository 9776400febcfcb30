"""bench/report.py reads bench/run.sh's output: the ingest target's line comes with its
bound measured in the same run (a hello's worker CPU plus the delivery's SQL through
psycopg alone, waiting where a gateway must)."""
from __future__ import annotations

from bench import report


def _wrk(name: str, rps: float, worker_ticks: int, requests: int) -> str:
    return (f"== {name}\n  Latency Distribution\n     99%    5.00ms\n"
            f"  {requests} requests in 10.00s, 1.00MB read\nRequests/sec: {rps}\n"
            f"CPU ticks: workers {worker_ticks} postgres 0 per 100/s\n")


def _run(psycopg_us: tuple[int, ...]) -> str:
    """Three rounds: a hello at 0.5 ms of worker CPU, ingest at 3 ms, and psycopg's figure."""
    text = ""
    for n, us in enumerate(psycopg_us, 1):
        text += _wrk(f"hello {n}", 2000.0, 1000, 20000) + _wrk(f"ingest {n}", 300.0, 900, 3000)
        text += f"== ingest-psycopg {n}\npsycopg client CPU per delivery: {us} us\n"
    return text


def test_the_ingest_line_is_followed_by_its_bound_of_the_same_run():
    text = _run((1400, 1500, 1450))
    lines = report.targets(report.parse(text), report.psycopg_ms(text))

    (ingest, missed), (bound, _) = lines
    assert missed and "ingest: 3.00 ms" in ingest and "MISSED" in ingest
    assert "bound, this run: 1.95 ms (rounds 1.90 2.00 1.95)" in bound
    assert "a hello 0.50 + its SQL through psycopg alone, waiting where a gateway must, 1.45" in bound
    assert "the target is below it" in bound and "the gateway's own work above it 1.05 ms (1.54 x" in bound


def test_without_the_psycopg_case_the_ingest_line_stands_alone_and_the_table_ignores_it():
    text = _run((1400,))
    assert "ingest-psycopg" not in report.parse(text)
    assert [line for line, _ in report.targets(report.parse(text))] == [
        "  ingest: 3.00 ms of worker CPU per request (rounds 3.00), target <= 0.8: MISSED"]
