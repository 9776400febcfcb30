"""Persistence behind a small port: a SQL implementation and an in-memory fake."""
