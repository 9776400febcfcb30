"""The pure rules of the gateway: standard library only.

Nothing in this package imports Flask, SQLAlchemy, a provider SDK or reads the clock;
callers pass the instant they judge at.
"""
