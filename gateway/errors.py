"""Errors with a known answer. ``web.errors`` turns each into its JSON response."""
from __future__ import annotations


class GatewayError(Exception):
    status = 500
    code = "internal_error"
    #: Seconds the caller should wait before asking again (a ``Retry-After`` header), when known.
    retry_after: int | None = None

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        super().__init__(message or self.code)
        self.message = message or self.code
        if code:
            self.code = code


class Malformed(GatewayError):
    status, code = 400, "malformed"


class Unauthorized(GatewayError):
    status, code = 401, "unauthorized"


class Forbidden(GatewayError):
    status, code = 403, "forbidden"


class NotFound(GatewayError):
    status, code = 404, "not_found"


class Conflict(GatewayError):
    status, code = 409, "conflict"


class Gone(GatewayError):
    """What the request points at was deleted for good (a feed cursor older than the feed);
    ``details`` go into the answer beside the code and message."""

    status, code = 410, "gone"

    def __init__(self, message: str | None = None, *, code: str | None = None,
                 details: dict[str, str] | None = None) -> None:
        super().__init__(message, code=code)
        self.details = details or {}


class TooLarge(GatewayError):
    status, code = 413, "payload_too_large"


class NotConfigured(GatewayError):
    status, code = 503, "source_not_configured"


class Unavailable(GatewayError):
    """A dependency (database, store API) cannot answer now; the caller may retry."""

    status, code = 503, "unavailable"

    def __init__(self, message: str | None = None, *, code: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class StoreApiError(Exception):
    """A store's API failed or timed out: applying is deferred, never lost."""
