"""The HTTP session webhooks go out on: it connects only to addresses the target check passed.

``targets.check`` resolves the URL's host before each attempt, but a connection would
resolve it again: a name whose answers change in between (DNS rebinding, a TTL of 0)
passes the check with a public address and connects to a private one. So each new
connection resolves its host once, checks every answer (``targets.public_addresses``) and
connects to those addresses; TLS still verifies the certificate against the host's name.
"""
from __future__ import annotations

from http.cookiejar import DefaultCookiePolicy

import requests
from urllib3 import connection, connectionpool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util.connection import create_connection

from . import targets


class _Checked:
    """Mixed into urllib3's connections: ``_new_conn`` without a second resolution."""

    def _new_conn(self):
        try:
            addresses = targets.public_addresses(self.host, self.port)
        except targets.TargetRefused as exc:
            raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc
        error: OSError | None = None
        for address in addresses:  # each in turn, as urllib3 tries each answer
            try:
                return create_connection((str(address), self.port), self.timeout,
                                         source_address=self.source_address, socket_options=self.socket_options)
            except OSError as exc:
                error = exc
        if isinstance(error, TimeoutError):
            raise ConnectTimeoutError(self, f"Connection to {self.host} timed out") from error
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}") from error


class _HTTPSPool(connectionpool.HTTPSConnectionPool):
    ConnectionCls = type("CheckedHTTPSConnection", (_Checked, connection.HTTPSConnection), {})


class _HTTPPool(connectionpool.HTTPConnectionPool):
    ConnectionCls = type("CheckedHTTPConnection", (_Checked, connection.HTTPConnection), {})


class _CheckedAdapter(requests.adapters.HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


def session(threads: int, allow_private: bool) -> requests.Session:
    """Connections kept alive across attempts; no cookies, no proxy or ``.netrc``
    credentials from the environment; only checked addresses unless private ones are allowed."""
    made = requests.Session()
    made.trust_env = False
    made.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    kind = requests.adapters.HTTPAdapter if allow_private else _CheckedAdapter
    adapter = kind(pool_maxsize=threads, max_retries=0)
    made.mount("https://", adapter)
    made.mount("http://", adapter)
    return made
