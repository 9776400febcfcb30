"""Whether a connection reaches PostgreSQL through a connection pooler.

A pooler (PgBouncer, Supavisor, RDS Proxy, the pooled URLs of Heroku, Supabase and Neon)
answers a client's startup itself, with a process id of its own (the cancel key's), and
lends the client a server session; in transaction mode, only for a transaction. Asking
the server for its process id tells the two apart. What the gateway does about it: no
prepared statements on such a connection (the next statement may run on a session that
never prepared it), and no entitlement listener (``notify``).
"""
from __future__ import annotations

import psycopg


def pooled(connection: psycopg.Connection) -> str | None:
    """Why ``connection`` is taken to go through a pooler, or None when it speaks to the
    server's own process. Leaves the connection as it found it (no transaction open)."""
    (served_by,) = connection.execute("SELECT pg_backend_pid()").fetchone()
    if not connection.autocommit:
        connection.rollback()
    told = connection.info.backend_pid
    return None if served_by == told else f"the server process is {served_by}, the connection was told {told}"
