"""The Stripe API fake as fixtures; import them into a test module.

``stripe_server`` is one local Stripe API for the whole session; ``fake`` is the same
server reset for the test; ``stripe_catalog`` is the path of a catalog file holding
``stripe_harness.CATALOG_DOCUMENT``.
"""
from __future__ import annotations

import json

import pytest

from tests.fakes.stripe_billing import StripeBilling
from tests.support.stripe_harness import CATALOG_DOCUMENT


@pytest.fixture(scope="session")
def stripe_server():
    with StripeBilling() as server:
        yield server


@pytest.fixture
def fake(stripe_server):
    stripe_server.reset()
    return stripe_server


@pytest.fixture
def stripe_catalog(tmp_path) -> str:
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(CATALOG_DOCUMENT))
    return str(catalog)
