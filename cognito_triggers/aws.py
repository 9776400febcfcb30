"""boto3 clients for the triggers, made once per container and bounded in time.

boto3 is imported on first use rather than at module import: it costs about 200 ms, which
would double the handlers' import time, and the pre token trigger never needs it.
Each call gets one attempt with short timeouts (botocore's default is 60 s and up to
3 attempts in standard mode:
https://boto3.amazonaws.com/v1/documentation/api/latest/guide/retries.html), so a slow
AWS endpoint costs at most ``WORST_CALL`` seconds of Cognito's budget.
"""
from __future__ import annotations

CONNECT_TIMEOUT = 0.5
READ_TIMEOUT = 1.0
WORST_CALL = CONNECT_TIMEOUT + READ_TIMEOUT

_clients: dict[str, object] = {}


def client(service: str):
    if service not in _clients:
        import boto3
        from botocore.config import Config

        config = Config(connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
                        retries={"mode": "standard", "total_max_attempts": 1})
        _clients[service] = boto3.client(service, config=config)
    return _clients[service]


def reset() -> None:
    """Forget the cached clients (tests start and stop AWS mocks between cases)."""
    _clients.clear()
