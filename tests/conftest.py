"""Fixtures shared by every layer: a migrated database, the app factory.

The database is SQLite unless ``TEST_DATABASE=postgresql``, in which case
``TEST_POSTGRES_URL`` names a server (``make test`` sets both when one is reachable,
and CI insists on it).
"""
from __future__ import annotations

import os
import shutil

import pytest
import sqlalchemy as sa

from gateway import create_app
from gateway.config import from_env
from gateway.store.migrate import upgrade
from gateway.store.tables import metadata

DATABASE = os.environ.get("TEST_DATABASE", "sqlite")


def pytest_report_header(config):
    return f"database: {DATABASE}"


@pytest.fixture(scope="session")
def _migrated_url(tmp_path_factory):
    if DATABASE == "postgresql":
        url = os.environ.get("TEST_POSTGRES_URL")
        if not url:
            pytest.fail("TEST_DATABASE=postgresql needs TEST_POSTGRES_URL")
        upgrade(from_env({"DATABASE_URL": url}).database_url)
        return from_env({"DATABASE_URL": url}).database_url
    path = tmp_path_factory.mktemp("template") / "gateway.db"
    upgrade(f"sqlite:///{path}")
    return f"sqlite:///{path}"


@pytest.fixture
def database_url(_migrated_url, tmp_path):
    """A migrated, empty database for one test."""
    if DATABASE == "postgresql":
        engine = sa.create_engine(_migrated_url)
        with engine.begin() as connection:
            names = ", ".join(table.name for table in metadata.sorted_tables)
            connection.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY"))
        engine.dispose()
        return _migrated_url
    path = tmp_path / "gateway.db"
    shutil.copy(_migrated_url.removeprefix("sqlite:///"), path)
    return f"sqlite:///{path}"


@pytest.fixture
def make_app(database_url):
    """Build the gateway from environment-style settings on the test's database."""
    apps = []

    def build(**env):
        settings = from_env({"DATABASE_URL": database_url, **{k: str(v) for k, v in env.items()}})
        app = create_app(settings)
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["gateway"].store.close()  # its pool, and the cache's listener when there is one


@pytest.fixture(scope="session")
def cognito():
    """Mints Cognito-shaped ID and access tokens; ``cognito.env()`` configures the gateway."""
    from devtools.cognito import CognitoIssuer

    with CognitoIssuer() as issuer:
        yield issuer
