"""Wiring: settings, store, providers and blueprints, composed once."""
from __future__ import annotations

import dataclasses
from typing import Any

from flask import Flask

from gateway import config, logs
from gateway.auth import ApiKeys, CognitoTokens
from gateway.checkout import Checkout, build_checkout
from gateway.domain.catalog import Catalog, load_catalog
from gateway.ingest import Ingest, utcnow
from gateway.providers import Provider
from gateway.store.port import Store


@dataclasses.dataclass
class Services:
    settings: config.Settings
    store: Store
    catalog: Catalog
    ingest: Ingest
    providers: dict[str, Provider]
    api_keys: ApiKeys
    cognito: CognitoTokens
    checkout: Checkout | None  # None without STRIPE_API_KEY


def build_providers(settings: config.Settings, catalog: Catalog) -> dict[str, Provider]:
    """One adapter per source; each module's ``build`` decides whether it is configured."""
    from gateway.providers import (apple_notifications, google_play_notifications,
                                   revenuecat_events, stripe_events)

    modules = (stripe_events, apple_notifications, google_play_notifications, revenuecat_events)
    return {module.SOURCE: module.build(settings, catalog) for module in modules}


def create_app(settings: config.Settings | None = None, *, store: Store | None = None,
               overrides: dict[str, Any] | None = None) -> Flask:
    """Build the gateway. Tests pass ``settings`` and may pass a ``store`` or providers."""
    settings = settings or config.from_env()
    logs.configure(settings.log_level)
    if store is None:
        from gateway.store.sql import SqlStore, make_engine

        store = SqlStore(make_engine(settings.database_url))
    if settings.entitlement_cache_seconds:
        from gateway.store.cache import CachedEntitlements

        store = CachedEntitlements(store, settings.entitlement_cache_seconds)
    catalog = load_catalog(settings.catalog_path)
    providers = build_providers(settings, catalog)
    providers.update((overrides or {}).get("providers", {}))
    services = Services(
        settings=settings, store=store, catalog=catalog, ingest=Ingest(store, catalog),
        providers=providers, api_keys=ApiKeys(settings.api_keys), cognito=CognitoTokens(settings),
        checkout=build_checkout(settings, store, catalog, utcnow),
    )

    app = Flask(__name__, instance_relative_config=True)
    if settings.forwarded_hops:
        # The client's address and scheme as the trusted proxies saw them: the admin's login
        # throttle is per client, not per router.
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.forwarded_hops, x_proto=settings.forwarded_hops)
    app.json.sort_keys = False
    app.extensions["gateway"] = services

    from gateway.jobs import cli
    from gateway.web import (access, admin, apple_purchases, checkout, entitlements, google_purchases, health,
                             history, openapi, webhooks)
    from gateway.web.errors import register_error_handlers

    for blueprint in (health.bp, webhooks.bp, entitlements.bp, checkout.bp, apple_purchases.bp,
                      google_purchases.bp, history.bp, openapi.bp):
        app.register_blueprint(blueprint)
    admin.install(app, settings)  # /admin; sets the session key and cookie flags
    access.install(app)  # access log lines, request metrics and /metrics
    register_error_handlers(app)
    cli.register(app)
    return app
