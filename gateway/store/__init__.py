"""Persistence behind a small port (`port.py`): the SQL stores, PostgreSQL and SQLite."""
