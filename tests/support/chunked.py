"""A request body sent chunked, as gunicorn hands one over: no Content-Length, read in
pieces, and longer than any limit. ``send`` says how much of it the app read."""
from __future__ import annotations

import io

from werkzeug.test import EnvironBuilder


class EndlessBody(io.RawIOBase):
    """Spaces up to ``size`` bytes, counting what was read."""

    def __init__(self, size: int = 10_000_000) -> None:
        self.size, self.served = size, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        size = min(len(buffer), self.size - self.served)
        buffer[:size] = b" " * size
        self.served += size
        return size


def send(app, path: str, headers: dict, body: EndlessBody | None = None) -> tuple[list[str], EndlessBody]:
    """POST ``body`` chunked to ``path``; the status lines answered and the body."""
    body = body or EndlessBody()
    environ = EnvironBuilder(path=path, method="POST", headers=headers).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ.update({"wsgi.input": body, "wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"})
    statuses = []
    app(environ, lambda status, response_headers: statuses.append(status))
    return statuses, body
