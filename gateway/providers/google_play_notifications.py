"""The google source: not built yet, so it refuses every delivery (503)."""
from __future__ import annotations

from gateway.providers.unconfigured import Unconfigured

SOURCE = "google"


def build(settings, catalog):
    return Unconfigured(SOURCE)
