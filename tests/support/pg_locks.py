"""What the PostgreSQL tests watch in ``pg_locks``, of their own database alone: the cluster is
shared with other databases (another test run, a benchmark), whose sessions lock too."""
from __future__ import annotations

import sqlalchemy as sa

#: The sessions of this database waiting for a lock (a row's lock is waited for on the holder's
#: transaction id, which names no database, hence the session's).
WAITING = sa.text("SELECT count(*) FROM pg_locks JOIN pg_stat_activity USING (pid) "
                  "WHERE NOT granted AND datname = current_database()")
