"""RevenueCat deliveries as RevenueCat sends them (sample shapes from its docs).

Moved to ``gateway.demo.revenuecat``, its one home, shared with the local demo; re-exported here.
"""
from gateway.demo.revenuecat import *  # noqa: F401,F403
