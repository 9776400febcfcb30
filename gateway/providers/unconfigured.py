"""A source whose adapter has no secrets: it refuses rather than accept unverified data."""
from __future__ import annotations

from gateway.errors import NotConfigured


class Unconfigured:
    translates_offline = True

    def __init__(self, source: str) -> None:
        self.source = source

    def verify(self, body, headers):
        raise NotConfigured(f"the {self.source} source is not configured")

    def translate(self, event, lookup):
        raise NotConfigured(f"the {self.source} source is not configured")
