"""Stripe JSON objects as the API renders them, in two API versions.

Moved to ``gateway.demo.stripe_objects``, its one home, shared with the local demo; re-exported here.
"""
from gateway.demo.stripe_objects import *  # noqa: F401,F403
