"""Wiring: settings, store, providers and blueprints, composed once."""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

from flask import Flask

from gateway import config, logs
from gateway import accounts
from gateway.accounts import AccountDeletion
from gateway.auth import ApiKeys, CognitoTokens
from gateway.checkout import Checkout, build_checkout
from gateway.domain.catalog import Catalog, load_catalog
from gateway.clock import utcnow
from gateway.ingest import Ingest
from gateway.providers import Provider
from gateway.store.port import Store
from gateway.web.json_provider import JsonProvider


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
    accounts: AccountDeletion


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
    services = build_services(settings, store, (overrides or {}).get("providers", {}))
    app = Flask(__name__, instance_relative_config=True)
    # Flask asks inspect.iscoroutinefunction() of every hook and view on every request, some
    # 4,000 instructions each, four on an entitlement read; a function's answer never changes.
    # Bounded: Flask also passes functions made per request (after_this_request).
    app.ensure_sync = functools.lru_cache(maxsize=256)(app.ensure_sync)
    if settings.forwarded_hops:
        # The client's address and scheme as the trusted proxies saw them: the admin's login
        # throttle is per client, not per router.
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.forwarded_hops, x_proto=settings.forwarded_hops)
    app.json = JsonProvider(app)
    # Every body, not only a webhook's: Werkzeug reads a JSON body or a urlencoded form
    # (the admin's sign-in, open to anyone) whole, chunked ones included, unless bounded.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["gateway"] = services
    _install_web(app, settings)
    return app


def build_services(settings: config.Settings, store: Store | None, providers: dict[str, Provider]) -> Services:
    """Everything the views and commands use, built once; ``providers`` replace the built ones."""
    store = _cached(settings, _store(settings) if store is None else store)
    catalog = load_catalog(settings.catalog_path)
    return Services(
        settings=settings, store=store, catalog=catalog, ingest=Ingest(store, catalog),
        providers={**build_providers(settings, catalog), **providers}, api_keys=ApiKeys(settings.api_keys),
        cognito=CognitoTokens(settings), checkout=build_checkout(settings, store, catalog, utcnow),
        accounts=accounts.build(settings, store, utcnow),
    )


def _cached(settings: config.Settings, store: Store) -> Store:
    """``store`` under the entitlement cache: by default where the database announces every
    change, else only when ENTITLEMENT_CACHE_SECONDS is set."""
    seconds = settings.entitlement_cache_seconds
    if seconds is None:
        seconds = config.DEFAULT_ENTITLEMENT_CACHE_SECONDS if store.announces_changes else 0
    if not seconds:
        return store
    from gateway.store.cache import CachedEntitlements

    return CachedEntitlements(store, seconds)


def _store(settings: config.Settings) -> Store:
    from gateway.store.sql import sql_store

    return sql_store(settings.database_url)


def _install_web(app: Flask, settings: config.Settings) -> None:
    """The blueprints, the admin, access logging and metrics, error handlers and commands."""
    from gateway.jobs import cli
    from gateway.web import access, account, admin, checkout, entitlements, feed, health, history, openapi, purchases
    from gateway.web import webhooks
    from gateway.web.errors import register_error_handlers

    for blueprint in (health.bp, webhooks.bp, entitlements.bp, checkout.bp, purchases.bp, history.bp, feed.bp,
                      account.bp, openapi.bp):
        app.register_blueprint(blueprint)
    admin.install(app, settings)  # /admin; sets the session key and cookie flags
    access.install(app)  # access log lines, request metrics and /metrics
    register_error_handlers(app)
    cli.register(app)
