"""App Store signed data for tests: transactions, renewal info and V2 notifications,

Moved to ``gateway.demo.apple_store``, its one home, shared with the local demo; re-exported here.
"""
from gateway.demo.apple_store import *  # noqa: F401,F403
