"""A real HTTP receiver of the gateway's outgoing webhooks, verifying each request with
the Standard Webhooks reference library, as an app's backend would.

``answer`` decides each reply from the verified body: ``"ok"`` (200), a status number,
``"redirect"`` (302 to ``/elsewhere``, which records that it was followed) or ``"sleep"``
(answers only after ``sleep_seconds``, past the sender's timeout).
"""
from __future__ import annotations

import base64
import dataclasses
import os
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclasses.dataclass
class Attempt:
    webhook_id: str
    body: dict
    verified_by: tuple[bool, ...]  # per secret, in order
    answer: str
    received_at: float


class Receiver:
    def __init__(self, secrets: list[str], port: int | None = None, sleep_seconds: float = 1.6) -> None:
        self.secrets, self.port, self.sleep_seconds = secrets, port or free_port(), sleep_seconds
        self.answer: Callable[[dict], object] = lambda body: "ok"
        self.attempts: list[Attempt] = []
        self.followed_redirects = 0
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def accepted(self) -> list[dict]:
        """The bodies answered 2xx in time, in the order they came."""
        with self.lock:
            return [a.body for a in self.attempts if a.answer == "ok"]

    def start(self) -> Receiver:
        self.server = _Server(("127.0.0.1", self.port), _handler(self))
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def receive(self, raw: bytes, headers: dict[str, str]) -> tuple[int, str]:
        verified, body = [], None
        for key in self.secrets:
            try:
                body = Webhook(key).verify(raw, headers)
                verified.append(True)
            except WebhookVerificationError:
                verified.append(False)
        if body is None:
            return 401, "unverified"
        answer = str(self.answer(body))
        with self.lock:
            self.attempts.append(Attempt(headers.get("webhook-id"), body, tuple(verified), answer, time.monotonic()))
        if answer == "sleep":
            time.sleep(self.sleep_seconds)
            return 200, answer
        return (200 if answer == "ok" else 302 if answer == "redirect" else int(answer)), answer


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # a sender's parallel connections are not dropped (nor retried a second later)


def _handler(receiver: Receiver):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path == "/elsewhere":
                receiver.followed_redirects += 1
                code = 200
            else:
                code, _ = receiver.receive(raw, {k.lower(): v for k, v in self.headers.items()})
            try:
                self.send_response(code)
                if code == 302:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:
                pass  # the sender gave up waiting (the "sleep" answer)

        def do_GET(self):  # a 302 followed turns the POST into a GET
            self.do_POST()

        def log_message(self, *args):
            pass

    return Handler
