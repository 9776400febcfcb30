"""Local fakes of the provider APIs, real HTTP servers on 127.0.0.1, usable without pytest."""
