"""Alembic environment: the URL comes from the caller or from DATABASE_URL."""
from __future__ import annotations

from alembic import context

from gateway import config as gateway_config
from gateway.store.migrate import session
from gateway.store.sql import make_engine, transactional
from gateway.store.tables import metadata

url = context.config.attributes.get("url") or gateway_config.from_env().database_url


def run() -> None:
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(url)
    with engine.connect() as connection, session(connection, context.config.attributes.get("lock_timeout")):
        connection = transactional(connection)
        # Each migration commits whole, or not at all, and alone: the locks it takes are
        # not held through the migrations after it (``migrate.py``).
        context.configure(connection=connection, target_metadata=metadata, transaction_per_migration=True,
                          render_as_batch=url.startswith("sqlite"))
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run()
