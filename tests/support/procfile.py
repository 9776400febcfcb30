"""Start the gateway exactly as the platform does: the Procfile's release, then web."""
from __future__ import annotations

import contextlib
import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip() and not line.startswith("#"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(extra: dict[str, str]) -> dict[str, str]:
    bin_dir = os.path.dirname(sys.executable)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", **extra}


@contextlib.contextmanager
def serve(env: dict[str, str], workers: int = 2):
    """Run release, then web on a free port; yields the base URL and stops gracefully."""
    commands, port = procfile(), free_port()
    env = _env({**env, "PORT": str(port), "WEB_CONCURRENCY": str(workers)})
    subprocess.run(commands["release"], shell=True, cwd=ROOT, env=env, check=True, capture_output=True)
    with _running(commands["web"], env) as web:
        _wait_ready(port, web)
        yield f"http://127.0.0.1:{port}", web


@contextlib.contextmanager
def work(env: dict[str, str], log: Path):
    """Run the Procfile's worker until the block ends, its log lines into ``log`` (the
    schema is the caller's)."""
    with open(log, "wb") as stderr, _running(procfile()["worker"], _env(env), stderr) as worker:
        yield worker


@contextlib.contextmanager
def _running(command: str, env: dict[str, str], stderr=subprocess.PIPE):
    process = subprocess.Popen(command, shell=True, cwd=ROOT, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        yield process
    finally:
        os.killpg(process.pid, 15)  # SIGTERM: gunicorn's graceful stop
        process.wait(timeout=30)
        _wait_group_gone(process.pid)


def _wait_group_gone(group: int, timeout: float = 30) -> None:
    """Until every process of the group has exited: the shell of the Procfile line exits at
    once, gunicorn's master only after its workers and its exit hook."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise RuntimeError(f"process group {group} still running {timeout} s after SIGTERM")


def _wait_ready(port: int, web: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if web.poll() is not None:
            raise RuntimeError(f"web exited: {web.stderr.read().decode()[-2000:]}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("web did not answer /healthz within 30 s")
