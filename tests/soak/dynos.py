"""The soak's dynos: N of them on one database, as Heroku runs N web and N worker dynos.
Each web dyno is the Procfile's ``web`` (a gunicorn master of its own, on its own port),
each worker dyno the Procfile's ``worker``.

And a connection to every gunicorn worker of every dyno (``WorkerLine``): each worker
process has its own entitlement cache (when on), so a read that is to show what every
dyno answers must ask each of them, not whichever one the kernel hands a connection to.
Which process holds a connection is read from ``/proc`` (Linux).
"""
from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from tests.support.procfile import serve, work


@dataclasses.dataclass(frozen=True)
class Dyno:
    number: int
    port: int
    web: subprocess.Popen

    def workers(self) -> set[int]:
        """gunicorn's workers: the children of its master (the Procfile's process itself,
        or the child of its shell)."""
        master = self.web.pid
        if Path(f"/proc/{master}/comm").read_text().strip() in ("sh", "dash", "bash"):
            master = int(_children(master)[0])
        return {int(pid) for pid in _children(master)}


def _children(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()


@contextlib.contextmanager
def started(count: int, env: dict[str, str], logs: Path) -> Iterator[tuple[list[Dyno], list[subprocess.Popen]]]:
    """``count`` web dynos, then ``count`` worker dynos (logs at INFO, each webhook sent,
    in ``logs/worker<n>.log``), numbered from 1;
    stopped gracefully, workers first, when the block ends."""
    with contextlib.ExitStack() as stack:
        webs = [Dyno(n, urlsplit(url).port, web) for n, (url, web) in
                enumerate((stack.enter_context(serve(env)) for _ in range(count)), start=1)]
        workers = [stack.enter_context(work({**env, "LOG_LEVEL": "INFO"}, logs / f"worker{n}.log"))
                   for n in range(1, count + 1)]
        yield webs, workers


class WorkerLine:
    """A keep-alive connection held by one gunicorn worker of one dyno."""

    def __init__(self, dyno: Dyno, pid: int, connection: http.client.HTTPConnection) -> None:
        self.dyno, self.pid, self.connection = dyno, pid, connection

    def __str__(self) -> str:
        return f"dyno {self.dyno.number} worker {self.pid}"

    def get(self, path: str, headers: dict) -> dict:
        for _ in range(3):
            try:
                self.connection.request("GET", path, headers=headers)
                response = self.connection.getresponse()
                body = response.read()
                assert response.status == 200, f"{self}: GET {path}: {response.status} {body[:300]!r}"
                return json.loads(body)
            except (OSError, http.client.HTTPException):  # the worker closed it: dial until it holds one again
                self.connection.close()
                self.connection = _dial(self.dyno, {self.pid})[self.pid]
        raise AssertionError(f"{self}: GET {path} failed three times")


def lines_to_every_worker(dyno: Dyno) -> list[WorkerLine]:
    pids = dyno.workers()
    return [WorkerLine(dyno, pid, connection) for pid, connection in sorted(_dial(dyno, pids).items())]


def _dial(dyno: Dyno, pids: set[int], timeout: float = 60) -> dict[int, http.client.HTTPConnection]:
    """Connections until each of ``pids`` holds one (the kernel picks the worker that
    accepts); those that landed on a worker already served are closed."""
    held: dict[int, http.client.HTTPConnection] = {}
    deadline = time.monotonic() + timeout
    while set(held) != pids:
        assert time.monotonic() < deadline, f"dyno {dyno.number}: no connection reached workers {pids - set(held)}"
        assert dyno.web.poll() is None, f"dyno {dyno.number} exited"
        connection = http.client.HTTPConnection("127.0.0.1", dyno.port, timeout=30)
        try:
            connection.request("GET", "/healthz")  # answered: accepted by a worker
            connection.getresponse().read()
        except (OSError, http.client.HTTPException):
            connection.close()
            continue
        pid = _holder(connection, dyno.port, pids)
        if pid is None or pid in held:
            connection.close()
        else:
            held[pid] = connection
    return held


def _holder(connection: http.client.HTTPConnection, port: int, pids: set[int]) -> int | None:
    """The process among ``pids`` holding the server's end of ``connection``."""
    client = connection.sock.getsockname()[1]
    with open("/proc/net/tcp") as table:  # local and remote "hex address:hex port", inode in column 10
        inodes = {fields[9] for fields in map(str.split, list(table)[1:])
                  if int(fields[1].split(":")[1], 16) == port and int(fields[2].split(":")[1], 16) == client}
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                        return pid
    return None


def read_everyone(lines: list[WorkerLine], users, path, headers: dict) -> dict[str, dict[str, dict]]:
    """Every user from every line, the lines side by side (a thread each), each line in
    the users' order: {user: {line: answer}}."""
    got: dict[WorkerLine, dict[str, dict]] = {line: {} for line in lines}
    threads = [threading.Thread(target=lambda line=line: got[line].update(
        (user, line.get(path(user), headers)) for user in users)) for line in lines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(len(answers) == len(users) for answers in got.values()), "a reading thread failed"
    return {user: {str(line): got[line][user] for line in lines} for user in users}


def keep_reading(lines: list[WorkerLine], users, path, headers: dict, stop: threading.Event) -> int:
    """Each user from every line in turn, round and round, until ``stop``; returns the reads."""
    reads = 0
    while not stop.is_set():
        for user in users:
            for line in lines:
                if stop.is_set():
                    return reads
                line.get(path(user), headers)
                reads += 1
    return reads


def webhooks_sent(logs: Path, count: int) -> list[int]:
    """Per worker dyno, the webhooks its log says it delivered."""
    return [sum(_message(line) == "webhook delivered" for line in (logs / f"worker{n}.log").open())
            for n in range(1, count + 1)]


def _message(line: str) -> str | None:
    try:
        return json.loads(line).get("message")
    except ValueError:
        return None


def cache_lookups(webs: list[Dyno], metrics_token: str) -> dict[str, int]:
    """What the dynos' entitlement caches did, from their ``/metrics`` (every worker's
    samples added up): {"hit": n, "miss": n}; nothing when the cache is off."""
    found: dict[str, int] = {}
    for dyno in webs:
        connection = http.client.HTTPConnection("127.0.0.1", dyno.port, timeout=30)
        try:
            connection.request("GET", "/metrics", headers={"Authorization": f"Bearer {metrics_token}"})
            response = connection.getresponse()
            text = response.read().decode()
        finally:
            connection.close()
        assert response.status == 200, text
        for line in text.splitlines():
            if line.startswith("gateway_entitlement_cache_lookups_total{"):
                outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
                found[outcome] = found.get(outcome, 0) + int(float(line.rsplit(" ", 1)[1]))
    return found
