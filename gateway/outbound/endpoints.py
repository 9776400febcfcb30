"""The receivers of outgoing webhooks, from ``OUTBOUND_WEBHOOKS`` or the admin, validated.

``OUTBOUND_WEBHOOKS`` is a JSON list of endpoints::

    [{"name": "backend", "url": "https://api.example.com/hooks/entitlements",
      "secrets": ["whsec_..."], "types": ["entitlement.*", "user.deleted"]}]

``secrets``: one or more (several while one rolls: each attempt is signed with all);
``types``: optional, every type when absent; ``entitlement.*`` names a family. A URL must be
https to a public address unless ``OUTBOUND_ALLOW_PRIVATE_TARGETS`` (``targets.check``).

The form of ``../shared/CONTRACT.md`` is read too: the value may be the path of a file
holding the list, ``events`` is another name for ``types``, and ``name`` may be left out
(the URL's host names the endpoint then).
"""
from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from gateway.config import ConfigError, Settings
from gateway.domain.entitlement_events import TYPES
from gateway.domain.webhooks import ENV, Endpoint

from . import signing, targets

VARIABLE = "OUTBOUND_WEBHOOKS"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
FIELDS = {"name", "url", "secrets", "types", "events"}


def endpoint(name, url, secrets, types=None, *, allow_private: bool = False, origin: str = ENV,
             resolve: Callable[..., list] = socket.getaddrinfo) -> Endpoint:
    """One endpoint from loose values; ``ValueError`` naming what is wrong (never a secret)."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValueError(f"name {name!r} must be 1 to 64 letters, digits, '.', '_' or '-'")
    if not isinstance(url, str) or len(url) > 2048:
        raise ValueError(f"{name}: url must be a URL of at most 2048 characters")
    try:
        targets.check(url, allow_private, resolve)
    except targets.TargetRefused as exc:
        raise ValueError(f"{name}: {exc}") from None
    return Endpoint(name, url, _secrets(name, secrets), _types(name, types), True, origin)


def _secrets(name: str, secrets) -> tuple[str, ...]:
    if not isinstance(secrets, list) or not secrets or not all(isinstance(s, str) for s in secrets):
        raise ValueError(f"{name}: secrets must be a list of one or more whsec_... secrets")
    for number, secret in enumerate(secrets, 1):
        try:
            signing.check_secret(secret)
        except ValueError as exc:
            raise ValueError(f"{name}: secret {number}: {exc}") from None
    return tuple(secrets)


def _types(name: str, types) -> tuple[str, ...] | None:
    if types is None:
        return None
    if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
        raise ValueError(f"{name}: types must be a list of event types, or left out for every type")
    for pattern in types:
        family = pattern[:-1] if pattern.endswith(".*") else None
        if pattern != "*" and pattern not in TYPES and not (family and any(t.startswith(family) for t in TYPES)):
            raise ValueError(f"{name}: unknown event type {pattern!r} (known: {', '.join(TYPES)})")
    return tuple(types)


def parse(raw: str | None, allow_private: bool = False,
          resolve: Callable[..., list] = socket.getaddrinfo) -> list[Endpoint]:
    """The endpoints of the variable's value; ``ValueError`` when it is malformed."""
    if not raw:
        return []
    text = _text_or_file(raw)
    try:
        found = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(found, list) or not all(isinstance(item, dict) for item in found):
        raise ValueError("must be a JSON list of objects")
    endpoints: list[Endpoint] = []
    for item in found:
        if not {"url", "secrets"} <= item.keys() or item.keys() - FIELDS or {"types", "events"} <= item.keys():
            raise ValueError("each endpoint has url and secrets, optionally name and types (or events); "
                             f"got {sorted(item)}")
        name = item["name"] if "name" in item else _host_name(item["url"], [e.name for e in endpoints])
        endpoints.append(endpoint(name, item["url"], item["secrets"], item.get("types", item.get("events")),
                                  allow_private=allow_private, resolve=resolve))
    names = [e.name for e in endpoints]
    if len(set(names)) != len(names):
        raise ValueError("endpoint names must be unique")
    return endpoints


def _text_or_file(raw: str) -> str:
    """The JSON itself, or the path of a file that holds it."""
    if raw.lstrip().startswith("[") or not os.path.isfile(raw):
        return raw
    try:
        with open(raw, encoding="utf-8") as file:
            return file.read()
    except (OSError, UnicodeError) as exc:
        raise ValueError(f"the file {raw!r} cannot be read ({exc.__class__.__name__})") from None


def _host_name(url, taken: list[str]) -> str:
    """The name of an endpoint given none: its URL's host and port, numbered when repeated."""
    host = urlsplit(url).netloc.rpartition("@")[2] if isinstance(url, str) else ""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", host).strip("-_.")[:60] or "endpoint"
    name, number = base, 1
    while name in taken:
        number += 1
        name = f"{base}-{number}"
    return name


def configured(settings: Settings) -> list[Endpoint]:
    """The endpoints of the settings; a bad value is a ``ConfigError`` naming the variable."""
    try:
        return parse(settings.outbound_webhooks, settings.outbound_allow_private_targets)
    except ValueError as exc:
        raise ConfigError(f"{VARIABLE}: {exc}") from None
