"""``make bench-scale``'s Python half (``bench/scale.sh`` runs it): the scale database's
load, the samples wrk reads, the admin page's and history API's latency, the EXPLAIN of
every hot statement, the database's size, and the report that judges the targets.

    .venv/bin/python bench/scale.py load --database-url URL [--users 1000000] [--out load.json]
    .venv/bin/python bench/scale.py loaded --database-url URL [--out load.json]
    .venv/bin/python bench/scale.py sample --database-url URL --out DIR
    .venv/bin/python bench/scale.py latency --url http://127.0.0.1:PORT --load load.json --out FILE
    .venv/bin/python bench/scale.py explain --database-url URL --load load.json --out FILE
    .venv/bin/python bench/scale.py size --database-url URL --out FILE
    .venv/bin/python bench/scale.py feed-prune --database-url URL --out FILE [--retention-days 90] [--batch 1000]
    .venv/bin/python bench/scale.py report DIR

The size comes from ``SCALE_USERS`` (default 1,000,000; 1.2 subscriptions and 10
deliveries per user), the sources' shares from ``SCALE_MIX`` (``stripe=30,apple=20,...``),
the webhook endpoint's deliveries from ``SCALE_WEBHOOKS`` (1, or 0 for none).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import scale_rows  # noqa: E402
from bench.scale_load import libpq  # noqa: E402


def sizes_from_env(users: int | None = None) -> scale_rows.Sizes:
    users = users or int(os.environ.get("SCALE_USERS", "1000000"))
    if users < 1000:
        raise SystemExit("SCALE_USERS: at least 1,000 (the heavy user alone has 1,000 deliveries)")
    mix = scale_rows.Sizes(users).mix
    if os.environ.get("SCALE_MIX"):
        pairs = [part.split("=") for part in os.environ["SCALE_MIX"].split(",")]
        total = sum(float(w) for _, w in pairs)
        mix = tuple((name.strip(), float(w) / total) for name, w in pairs)
        if sorted(name for name, _ in mix) != sorted(scale_rows.SOURCES):
            raise SystemExit(f"SCALE_MIX names each of {', '.join(scale_rows.SOURCES)} once")
    return scale_rows.Sizes(users, mix=mix, webhooks=os.environ.get("SCALE_WEBHOOKS", "1") != "0")


def _load(args) -> int:
    from bench.scale_load import load

    figures = load(args.database_url, sizes_from_env(args.users), log=lambda line: print(line, flush=True))
    figures["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                       cwd=Path(__file__).resolve().parent.parent).stdout.strip()
    with psycopg.connect(libpq(args.database_url), autocommit=True) as connection:  # what this database holds
        connection.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(connection.info.dbname), sql.Literal(json.dumps(figures))))
    print(json.dumps(figures, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2))
    return 0


def _loaded(args) -> int:
    """Exit 0 when the database holds a load of this size and mix (its comment, written
    by ``load``), copying its figures to ``--out``."""
    wanted = sizes_from_env()
    with psycopg.connect(libpq(args.database_url), autocommit=True) as connection:
        name = connection.info.dbname
        comment = connection.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                                     "WHERE datname = current_database()").fetchone()[0]
    try:
        figures = json.loads(comment or "")
    except ValueError:
        return 1
    if figures.get("users") != wanted.users or figures.get("mix") != dict(wanted.mix):
        return 1
    if figures.get("changed"):
        print(f"{name}: {figures['changed']}")
        return 1
    print(f"{name} already holds {wanted.users:,} users (loaded at {figures.get('commit')} "
          f"in {figures.get('load_seconds')} s): not loaded again (SCALE_RELOAD=1 does)")
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2))
    return 0


def _sample(args) -> int:
    """The users wrk reads (any of the million) and the active RevenueCat subscriptions it
    renews, drawn afresh, one a line."""
    out = Path(args.out)
    with psycopg.connect(libpq(args.database_url), autocommit=True) as connection:
        total = connection.execute("SELECT reltuples FROM pg_class WHERE relname = 'entitlements'").fetchone()[0]
        percent = min(100.0, 100.0 * args.users * 1.2 / max(total, 1))
        users = connection.execute(f"SELECT user_sub FROM entitlements TABLESAMPLE BERNOULLI ({percent}) "
                                   f"LIMIT {args.users}").fetchall()
        renewals = connection.execute(
            f"SELECT user_sub, key FROM subscriptions TABLESAMPLE BERNOULLI ({min(100.0, percent * 2)}) "
            f"WHERE source = 'revenuecat' AND status = 'active' AND user_sub IS NOT NULL LIMIT {args.users // 5}"
        ).fetchall()
    (out / "users.txt").write_text("".join(f"{u}\n" for (u,) in users))
    (out / "renewals.txt").write_text("".join(f"{u}\t{k}\n" for u, k in renewals))
    print(f"sampled {len(users):,} users to read, {len(renewals):,} RevenueCat subscriptions to renew")
    return 0


def _heavy(args) -> str:
    return json.loads(Path(args.load).read_text())["heavy_user"]


def _latency(args) -> int:
    from bench.scale_measure import latency

    found = latency(args.url, _heavy(args), os.environ["BENCH_API_KEY"], args.requests)
    Path(args.out).write_text(json.dumps(found, indent=2))
    return 0


def _explain(args) -> int:
    from bench.scale_explain import run

    found = run(libpq(args.database_url), _heavy(args))
    Path(args.out).write_text(json.dumps(found, indent=2, default=str))
    return 0


def _size(args) -> int:
    from bench.scale_measure import size

    Path(args.out).write_text(json.dumps(size(libpq(args.database_url)), indent=2))
    return 0


def _feed_prune(args) -> int:
    """The feed's retention on the loaded feed (``bench/scale_prune.py``); it deletes rows,
    so the database is marked changed and the next run loads it again."""
    from bench.scale_prune import pruned_at, run, summary

    with psycopg.connect(libpq(args.database_url), autocommit=True) as connection:
        figures = json.loads(connection.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                                                "WHERE datname = current_database()").fetchone()[0] or "{}")
        figures["changed"] = pruned_at()
        connection.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(connection.info.dbname), sql.Literal(json.dumps(figures))))
    found = run(args.database_url, args.port, args.retention_days, args.batch)
    Path(args.out).write_text(json.dumps(found, indent=2))
    print("\n".join(summary(found)))
    return 0


def _report(args) -> int:
    from bench.scale_report import report

    return report(Path(args.results))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    load = commands.add_parser("load", help="migrate, empty and fill the database")
    load.add_argument("--database-url", required=True)
    load.add_argument("--users", type=int, help="instead of SCALE_USERS")
    load.add_argument("--out", help="write the load's figures here (JSON)")
    load.set_defaults(run=_load)
    loaded = commands.add_parser("loaded", help="exit 0 when the database holds SCALE_USERS' load already")
    loaded.add_argument("--database-url", required=True)
    loaded.add_argument("--out", help="write the load's figures here (JSON)")
    loaded.set_defaults(run=_loaded)
    sample = commands.add_parser("sample", help="users.txt and renewals.txt for wrk")
    sample.add_argument("--database-url", required=True)
    sample.add_argument("--out", required=True, help="a directory")
    sample.add_argument("--users", type=int, default=100_000)
    sample.set_defaults(run=_sample)
    for name, run, help_ in (("latency", _latency, "the heavy user's history API and admin page, one at a time"),
                             ("explain", _explain, "EXPLAIN (ANALYZE, BUFFERS) of every hot statement"),
                             ("size", _size, "the database's size, per table and per million users")):
        command = commands.add_parser(name, help=help_)
        command.add_argument("--out", required=True, help="a JSON file")
        command.set_defaults(run=run)
        if name == "latency":
            command.add_argument("--url", required=True, help="the gateway, started by bench/scale.sh")
            command.add_argument("--requests", type=int, default=200)
        else:
            command.add_argument("--database-url", required=True)
        if name != "size":
            command.add_argument("--load", required=True, help="the load's figures (JSON): who the heavy user is")
    prune = commands.add_parser("feed-prune", help="the feed's retention with a feed writer and GET /v1/events "
                                "beside it (deletes rows: the next run loads again)")
    prune.add_argument("--database-url", required=True)
    prune.add_argument("--out", required=True, help="a JSON file")
    prune.add_argument("--retention-days", type=int, default=90)
    prune.add_argument("--batch", type=int, default=1000)
    prune.add_argument("--port", type=int, default=18094, help="where the gateway it starts listens")
    prune.set_defaults(run=_feed_prune)
    report = commands.add_parser("report", help="print every target with its figure; exit 1 when one is missed")
    report.add_argument("results", help="the directory bench/scale.sh wrote")
    report.set_defaults(run=_report)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
