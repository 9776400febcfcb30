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
        if not _public(address):
            raise TargetRefused(f"{host} resolves to {address}, which is not a public address")
    return found


#: NAT64's well-known prefix (RFC 6052), which carries an IPv4 address in its last 32 bits,
#: and its local-use prefix (RFC 8215), whose translation is the operator's own.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Global and not multicast; for an IPv6 address that carries an IPv4 one (NAT64, 6to4,
    IPv4-compatible or -mapped), which Python counts as global whatever it carries, the
    IPv4 address it reaches must be public too: 64:ff9b::a9fe:a9fe is the metadata
    service on an IPv6-only network."""
    if not address.is_global or address.is_multicast:
        return False
    if address.version == 4:
        return True
    if address in _NAT64_LOCAL:
        return False
    inside = address.ipv4_mapped or address.sixtofour
    if inside is None and (address in _NAT64 or address in _IPV4_COMPATIBLE):
        inside = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return inside is None or _public(inside)


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
