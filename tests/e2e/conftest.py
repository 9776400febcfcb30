"""End-to-end fixtures: the WSGI app with every source it can verify configured."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

API_KEY = "gk_test_" + "k" * 24


@pytest.fixture
def api(make_app):
    """Read entitlements the way a backend would."""

    def read(client, user_sub: str):
        response = client.get(f"/v1/users/{user_sub}/entitlements", headers={"Authorization": f"Bearer {API_KEY}"})
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    return read


@pytest.fixture
def refuse_writes(database_url):
    """Make the database refuse writes to a table, as a full disk or a read-only failover would."""
    engine = sa.create_engine(database_url)
    postgres = engine.dialect.name == "postgresql"

    def run(statements):
        with engine.begin() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement)

    class Switch:
        def on(self, table: str = "events"):
            self.table = table
            if postgres:
                run(["CREATE OR REPLACE FUNCTION refuse_writes() RETURNS trigger AS $$ BEGIN "
                     "RAISE EXCEPTION 'could not extend file: No space left on device'; END $$ LANGUAGE plpgsql",
                     f"CREATE TRIGGER refuse_writes BEFORE INSERT OR UPDATE ON {table} "
                     "FOR EACH ROW EXECUTE FUNCTION refuse_writes()"])
            else:
                run([f"CREATE TRIGGER refuse_writes BEFORE INSERT ON {table} "
                     "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END",
                     f"CREATE TRIGGER refuse_updates BEFORE UPDATE ON {table} "
                     "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"])

        def off(self):
            run([f"DROP TRIGGER refuse_writes ON {self.table}", "DROP FUNCTION refuse_writes()"] if postgres
                else ["DROP TRIGGER refuse_writes", "DROP TRIGGER refuse_updates"])

    yield Switch()
    engine.dispose()


def count_events(app) -> int:
    store = app.extensions["gateway"].store
    with store.engine.connect() as connection:
        return connection.execute(sa.text("SELECT count(*) FROM events")).scalar()


@pytest.fixture
def sql(database_url):
    """The SQL store of the test database, on an engine of its own."""
    from gateway.store.sql import sql_store

    store = sql_store(database_url)
    yield store
    store.engine.dispose()
