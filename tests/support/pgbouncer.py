"""A real PgBouncer in front of the test database, as platforms put one before PostgreSQL
(Heroku's connection pooling, Supabase's and Neon's pooled URLs): clients share the
server's sessions, in transaction mode a client holds one only for a transaction.

``scripts/test.sh`` installs Debian's package under CI; elsewhere a test that needs it
is skipped when it is not installed.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa


def binary() -> str | None:
    return shutil.which("pgbouncer") or next(
        (path for path in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(path, os.X_OK)), None)


def required() -> str:
    """PgBouncer's binary; the test is skipped where it is not installed, and fails
    under CI, where ``scripts/test.sh`` installs it."""
    found = binary()
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PgBouncer is not installed (scripts/test.sh installs it under CI)")
        pytest.skip("PgBouncer is not installed")
    return found


@contextlib.contextmanager
def running(pgbouncer: str, upstream: sa.URL, pool_mode: str = "transaction") -> Iterator[str]:
    """A PgBouncer pooling ``upstream``'s database in ``pool_mode``; yields a libpq URL
    to it (same user, password and database)."""
    workdir = tempfile.mkdtemp(prefix="gateway-pgbouncer-")
    os.chmod(workdir, 0o755)  # run as root it drops to postgres, who must read its files
    port = _free_port()
    files = {
        "pgbouncer.ini": "\n".join([
            "[databases]",
            f"{upstream.database} = host={upstream.host or '127.0.0.1'} port={upstream.port or 5432} "
            f"dbname={upstream.database}",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1", f"listen_port = {port}", "unix_socket_dir =",
            "auth_type = plain", f"auth_file = {workdir}/userlist.txt",
            f"pool_mode = {pool_mode}", "default_pool_size = 4", ""]),
        "userlist.txt": f'"{upstream.username}" "{upstream.password}"\n',
    }
    for name, text in files.items():
        path = os.path.join(workdir, name)
        with open(path, "w") as file:
            file.write(text)
        os.chmod(path, 0o644)
    command = [pgbouncer, *(["-u", "postgres"] if os.geteuid() == 0 else []), f"{workdir}/pgbouncer.ini"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = upstream.set(drivername="postgresql", host="127.0.0.1", port=port).render_as_string(hide_password=False)
    try:
        _wait_until_it_answers(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_it_answers(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 10
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"PgBouncer stopped: {process.stderr.read().decode(errors='replace')}")
        try:
            psycopg.connect(url, connect_timeout=2, prepare_threshold=None).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
