"""The admin's sign-in attempts in the database (``LoginAttempts``): each count taken in
one statement, a window opened by a client's first attempt, expired rows pruned."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from gateway.store.login_attempts import PRUNE_BATCH, LoginAttempts
from gateway.store.sql import make_engine
from gateway.store.tables import admin_login_attempts

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
WINDOW = timedelta(seconds=300)


@pytest.fixture
def attempts(database_url):
    engine = make_engine(database_url)
    yield LoginAttempts(engine)
    engine.dispose()


def clients(attempts) -> set[str]:
    with attempts.engine.connect() as connection:
        return set(connection.execute(sa.select(admin_login_attempts.c.client)).scalars())


def test_attempts_count_up_within_the_window_and_start_again_after_it(attempts):
    assert [attempts.count("203.0.113.9", T0 + timedelta(seconds=n), WINDOW) for n in range(6)] == [1, 2, 3, 4, 5, 6]
    assert attempts.count("203.0.113.9", T0 + timedelta(seconds=299), WINDOW) == 7
    assert attempts.count("203.0.113.9", T0 + WINDOW, WINDOW) == 1  # the window opened at T0 has passed
    assert attempts.count("203.0.113.9", T0 + WINDOW + timedelta(seconds=299), WINDOW) == 2
    assert attempts.count("198.51.100.4", T0 + WINDOW, WINDOW) == 1  # each client its own count


def test_forgetting_a_client_starts_its_count_again(attempts):
    for _ in range(3):
        attempts.count("203.0.113.9", T0, WINDOW)
    attempts.count("198.51.100.4", T0, WINDOW)
    attempts.forget("203.0.113.9")
    assert attempts.count("203.0.113.9", T0, WINDOW) == 1
    assert attempts.count("198.51.100.4", T0, WINDOW) == 2


def test_an_attempt_prunes_the_rows_whose_window_has_passed_a_batch_at_a_time(attempts):
    """A spray of addresses leaves a row each: they go once their window has passed,
    without a job, a bounded number per attempt."""
    with attempts.engine.begin() as connection:
        connection.execute(sa.insert(admin_login_attempts), [
            {"client": f"10.0.{n // 256}.{n % 256}", "attempts": 1, "window_start": T0} for n in range(PRUNE_BATCH + 10)])
    attempts.count("203.0.113.9", T0 + timedelta(seconds=299), WINDOW)
    assert len(clients(attempts)) == PRUNE_BATCH + 11  # none has expired yet
    attempts.count("203.0.113.9", T0 + WINDOW, WINDOW)
    assert len(clients(attempts)) == 11
    attempts.count("198.51.100.4", T0 + WINDOW, WINDOW)
    assert clients(attempts) == {"203.0.113.9", "198.51.100.4"}
