"""A local HTTP fake of the Google Play Developer API and of Google's OAuth token endpoint.

Moved to ``gateway.demo.google_play``, its one home, shared with the local demo; re-exported here.
"""
from gateway.demo.google_play import *  # noqa: F401,F403
