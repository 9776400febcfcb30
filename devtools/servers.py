"""A real HTTP server on 127.0.0.1 for local fakes of the APIs the gateway calls."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Request:
    def __init__(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        parts = urlsplit(handler.path)
        self.method = handler.command
        self.path = parts.path
        self.query = parse_qs(parts.query)
        self.headers = handler.headers
        self.body = body
        self.received_at = time.monotonic()  # a fake can tell how fast it was asked

    def json(self):
        return json.loads(self.body or b"null")


#: A route answers (status, body, headers); body may be bytes, str or JSON-able.
Route = Callable[[Request], tuple]


class Held:
    """One answer a fake holds back: the state is read when the request arrives, the
    answer sent only on ``release()`` (an answer slow to come back)."""

    def __init__(self) -> None:
        self.read, self.released, self.read_at = threading.Event(), threading.Event(), 0.0

    def reached(self, timeout: float = 10) -> None:
        """Called by the fake once it has read the state: say so, then wait for release."""
        self.read_at = time.time()
        self.read.set()
        self.released.wait(timeout)

    def release(self) -> None:
        self.released.set()


class LocalServer:
    """Serve ``routes`` (``"GET /path"`` -> function, or a fallback ``"*"``) on an ephemeral port."""

    def __init__(self, routes: dict[str, Route]) -> None:
        self.routes = routes
        self.requests: list[Request] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(self, self.rfile.read(length) if length else b"")
                outer.requests.append(request)
                route = outer.routes.get(f"{request.method} {request.path}") or outer.routes.get("*")
                status, body, headers = route(request) if route else (404, {"error": "no route"}, {})
                if not isinstance(body, (bytes, str)):
                    body, headers = json.dumps(body), {"Content-Type": "application/json", **headers}
                data = body.encode() if isinstance(body, str) else body
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "LocalServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def write_body(wfile, data: bytes, drip: float | None = None) -> None:
    """Write an answer's body; with ``drip``, a byte at a time that many seconds apart, so
    that every read of the client succeeds and only a bound on the whole call stops it."""
    if not drip:
        wfile.write(data)
        return
    for index in range(len(data)):
        wfile.write(data[index:index + 1])
        wfile.flush()
        time.sleep(drip)
