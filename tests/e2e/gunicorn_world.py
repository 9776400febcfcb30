"""The gateway started from the Procfile under gunicorn, for tests that kill or reload it.

``tests.support.procfile.serve`` stops the server gracefully when the test ends; these tests
kill it themselves, so they start it here with the same release and web commands.
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from tests.support.procfile import ROOT, _env, _wait_ready, free_port, procfile


class Gunicorn:
    def __init__(self, env: dict[str, str], workers: int = 2) -> None:
        self.port = free_port()
        # A killed gunicorn cannot remove its own metrics directory: this one is ours to remove.
        self.metrics_dir = tempfile.mkdtemp(prefix="gateway-test-metrics-")
        self.env = _env({"PROMETHEUS_MULTIPROC_DIR": self.metrics_dir, **env, "PORT": str(self.port),
                         "WEB_CONCURRENCY": str(workers)})
        commands = procfile()
        subprocess.run(commands["release"], shell=True, cwd=ROOT, env=self.env, check=True, capture_output=True)
        self.web = subprocess.Popen(commands["web"], shell=True, cwd=ROOT, env=self.env, start_new_session=True,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _wait_ready(self.port, self.web)

    def master(self) -> int:
        """gunicorn's master: the Procfile's process itself, or the child of its shell."""
        if Path(f"/proc/{self.web.pid}/comm").read_text().strip() not in ("sh", "dash", "bash"):
            return self.web.pid
        return int(Path(f"/proc/{self.web.pid}/task/{self.web.pid}/children").read_text().split()[0])

    def workers(self) -> set[int]:
        master = self.master()
        return {int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()}

    def post(self, path: str, body: bytes, headers: dict, timeout: float = 30) -> tuple[int, dict]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            connection.close()

    def flask(self, *args: str) -> str:
        done = subprocess.run(["flask", "--app", "wsgi", *args], cwd=ROOT, env=self.env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    def kill(self) -> None:
        """Power cut: SIGKILL to the master and every worker at once."""
        os.killpg(self.web.pid, signal.SIGKILL)
        self.web.wait(timeout=10)
        shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def stop(self) -> None:
        if self.web.poll() is None:
            os.killpg(self.web.pid, signal.SIGTERM)
            self.web.wait(timeout=30)
        shutil.rmtree(self.metrics_dir, ignore_errors=True)
