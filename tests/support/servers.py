"""A real HTTP server on 127.0.0.1 for local fakes of the APIs the gateway calls.

Moved to ``gateway.demo.servers``, its one home, shared with the local demo; re-exported here.
"""
from gateway.demo.servers import *  # noqa: F401,F403
