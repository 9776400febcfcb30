"""A real HTTP server on 127.0.0.1 for local fakes of the APIs the gateway calls.

Moved to ``gateway.demo.servers``, its one home, shared with the local demo; re-exported here,
beside a helper only the tests need.
"""
import time

from gateway.demo.servers import *  # noqa: F401,F403


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
