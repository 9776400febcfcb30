"""The subscription entitlement gateway.

``create_app`` lives in ``gateway.app``; it is loaded on first use so that the pure
``gateway.domain`` package can be imported without Flask.
"""


def __getattr__(name):
    if name == "create_app":
        from gateway.app import create_app

        return create_app
    raise AttributeError(name)
