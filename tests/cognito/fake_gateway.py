"""A local stand-in for the gateway's server API (``GET /v1/users/<sub>/entitlements``).

A real HTTP server on 127.0.0.1 answering CONTRACT.md's "Entitlement API" shape; users with
nothing known answer ``{"is_premium": false, "entitlements": {}}`` as the gateway does.
"""
from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from devtools.servers import write_body


class FakeGateway:
    def __init__(self, api_key: str = "gw_test_key_9d1e") -> None:
        self.api_key = api_key
        self.entitlements: dict[str, dict] = {}
        self.requests: list[dict] = []
        self.outage_status: int | None = None
        self.delay = 0.0
        self.drip: float | None = None  # send the body a byte at a time, this many seconds apart
        self.raw: object = None  # answer this JSON instead (a proxy, another version)
        self._released = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def grant(self, sub: str, **entitlements: dict) -> None:
        self.entitlements[sub] = entitlements

    def answer(self, path: str, authorization: str) -> tuple[int, dict]:
        self.requests.append({"path": path, "authorization": authorization})
        if self.delay:
            self._released.wait(self.delay)
        if self.outage_status:
            return self.outage_status, {"error": "unavailable"}
        if self.raw is not None:
            return 200, self.raw
        if authorization != f"Bearer {self.api_key}":
            return 401, {"error": "unauthorized"}
        match = re.fullmatch(r"/v1/users/([^/]+)/entitlements", path)
        if not match:
            return 404, {"error": "not_found"}
        grants = self.entitlements.get(match[1], {})
        is_premium = any(grant.get("active") for grant in grants.values())
        return 200, {"user_id": match[1], "is_premium": is_premium, "entitlements": grants}

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                status, body = fake.answer(self.path, self.headers.get("Authorization", ""))
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    write_body(self.wfile, data, fake.drip)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        return Handler

    def __enter__(self) -> "FakeGateway":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
