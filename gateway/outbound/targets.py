"""Where outgoing webhooks may go: not into the operator's own network, unless allowed.

A webhook URL is configuration, but a mistyped or malicious one must not make the gateway
call its own metadata service (169.254.169.254), its database or another internal host
(server-side request forgery). Every address the host resolves to must be global; private,
loopback, link-local, multicast, reserved and unspecified addresses are refused unless
``OUTBOUND_ALLOW_PRIVATE_TARGETS`` is set (a receiver on the same private network). The
check runs when the settings are read and again before every attempt, since DNS answers
change, and each connection goes to the addresses it checked (``transport``).
"""
from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import urlsplit


class TargetRefused(ValueError):
    """The URL may not be called."""


def check(url: str, allow_private: bool = False, resolve: Callable[..., list] | None = None) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise TargetRefused(f"not an http(s) URL with a host: {url!r}")
    if parts.username or parts.password:
        raise TargetRefused("credentials in a webhook URL are not sent; use the signature")
    if parts.scheme == "http" and not allow_private:
        raise TargetRefused("webhooks go over https (http only with OUTBOUND_ALLOW_PRIVATE_TARGETS)")
    if not allow_private:
        public_addresses(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), resolve)


def public_addresses(host: str, port: int, resolve: Callable[..., list] | None = None) -> list:
    """Every address ``host`` resolves to (one resolution), all public; else ``TargetRefused``.
    ``transport`` connects to these, so the name is not asked again in between."""
    found = _addresses(host, port, resolve or socket.getaddrinfo)
    for address in found:
        if not address.is_global or address.is_multicast:
            raise TargetRefused(f"{host} resolves to {address}, which is not a public address")
    return found


def _addresses(host: str, port: int, resolve) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        found = resolve(host, port, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise TargetRefused(f"{host} does not resolve: {exc}") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in found]
    if not addresses:
        raise TargetRefused(f"{host} resolves to no address")
    return addresses
