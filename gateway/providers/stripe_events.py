"""The stripe source: not built yet, so it refuses every delivery (503)."""
from __future__ import annotations

from gateway.providers.unconfigured import Unconfigured

SOURCE = "stripe"


def build(settings, catalog):
    return Unconfigured(SOURCE)
