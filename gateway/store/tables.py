"""The database schema. Alembic migrations under ``gateway/store/migrations`` build it."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
})

Json = sa.JSON().with_variant(JSONB(), "postgresql")
Time = sa.DateTime(timezone=True)

events = sa.Table(
    "events", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("event_id", sa.String(255), nullable=False),
    sa.Column("event_type", sa.String(128), nullable=False),
    sa.Column("received_at", Time, nullable=False),
    sa.Column("payload", sa.Text(), nullable=False),
    sa.Column("data", Json, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("processed_at", Time, nullable=True),
    sa.Column("next_attempt_at", Time, nullable=True),
    sa.UniqueConstraint("source", "event_id", name="uq_events_source_event_id"),
    sa.Index("ix_events_status_next_attempt_at", "status", "next_attempt_at"),
    sa.Index("ix_events_received_at", "received_at"),
)

subscriptions = sa.Table(
    "subscriptions", metadata,
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("user_sub", sa.String(255), nullable=True, index=True),
    sa.Column("owner_as_of", Time, nullable=True),
    sa.Column("account", sa.String(255), nullable=True),
    sa.Column("account_as_of", Time, nullable=True),
    # The stamp of the oldest snapshot seen (``Subscription.first_as_of``); NULL: not known.
    sa.Column("first_as_of", Time, nullable=True),
    sa.Column("product_id", sa.String(255), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("raw_status", sa.String(64), nullable=True),
    sa.Column("expires_at", Time, nullable=True),
    sa.Column("will_renew", sa.Boolean(), nullable=False),
    sa.Column("environment", sa.String(32), nullable=True),
    # The store under the source (RevenueCat's ``store``, ``Snapshot.store``); NULL: not named or not known.
    sa.Column("store", sa.String(32), nullable=True),
    # The store's id of the payment behind the period (App Store transactionId); NULL: none named.
    sa.Column("period_id", sa.String(255), nullable=True),
    # When the store signed what the row shows (``Snapshot.shown_as_of``: the App Store's
    # transaction ``signedDate``); NULL: not known. Described by ``derived_as_of`` too.
    sa.Column("shown_as_of", Time, nullable=True),
    sa.Column("entitlement_names", Json, nullable=True),
    # ``Snapshot.entitlement_terms``: {entitlement: {"end", "renews", "product"}} of those whose
    # end, renewal or product is not the row's (a Play add-on); NULL: none.
    sa.Column("entitlement_terms", Json, nullable=True),
    # The ``as_of`` ``period_id`` and ``entitlement_terms`` were written with. Another
    # ``as_of`` than the row's: a release that knew neither wrote the row since (a rolling
    # upgrade), and both are unknown. NULL: written before this column; both stand.
    sa.Column("derived_as_of", Time, nullable=True),
    # What refunds and chargebacks took back (``domain.model.Revocations``); NULL: nothing.
    sa.Column("revocations", Json, nullable=True),
    sa.Column("as_of", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.Index("ix_subscriptions_source_account", "source", "account"),
    sa.Index("ix_subscriptions_expires_at", "expires_at"),
    sa.Index("ix_subscriptions_status", "status"),  # reconcile's unsettled rows
)

entitlements = sa.Table(
    "entitlements", metadata,
    sa.Column("user_sub", sa.String(255), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("expires_at", Time, nullable=True),
    sa.Column("will_renew", sa.Boolean(), nullable=False),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("product_id", sa.String(255), nullable=True),
    sa.Column("subscription_key", sa.String(255), nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.Index("ix_entitlements_expires_at", "expires_at"),  # the expiry sweep's window
)

identities = sa.Table(
    "identities", metadata,
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("account", sa.String(255), primary_key=True),
    sa.Column("user_sub", sa.String(255), nullable=False, index=True),
    sa.Column("as_of", Time, nullable=True),
    sa.Column("created_at", Time, nullable=False),
)

# The transfers each source's store made (RevenueCat TRANSFER), one row per account moved
# from: replayed by their stamps whenever a transfer applies (``domain.changes.transferred``),
# so one that found nothing to move still counts once an older one brings the purchase.
# Two transfers from one account stamped alike: the greater claim holds (``link_claim``).
transfers = sa.Table(
    "transfers", metadata,
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("account", sa.String(255), primary_key=True),
    sa.Column("as_of", Time, primary_key=True),
    sa.Column("to_user", sa.String(255), nullable=True, index=True),  # NULL: to nobody
    # What it moves (``Transfer.moves``); NULL: any (not named, or recorded before migration 0020).
    sa.Column("store", sa.String(32), nullable=True),
    sa.Column("environment", sa.String(32), nullable=True),
    sa.Column("created_at", Time, nullable=False),
    sa.Index("ix_transfers_as_of", "as_of"),  # the retention's walk by age (gateway/store/retention.py)
)

# Which subscriptions each delivery touched, written when it is applied: the evidence the
# explain API and the admin show. Many-to-many, since one delivery may move several
# subscriptions (a RevenueCat transfer, an identity link) and a subscription has many.
event_subscriptions = sa.Table(
    "event_subscriptions", metadata,
    sa.Column("event_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
              sa.ForeignKey("events.id", ondelete="CASCADE", name="fk_event_subscriptions_event_pk"),
              primary_key=True),
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Index("ix_event_subscriptions_source_key", "source", "key", "event_pk"),
)

# The entitlement feed: one row per change of a user's entitlements, written in the
# transaction that made the change. ``position`` is the feed's order: taken from the one
# row of ``feed_clock`` (whose row lock is held to commit), so positions are gapless and
# commit in order, and a reader paging by position never skips a late commit.
entitlement_events = sa.Table(
    "entitlement_events", metadata,
    sa.Column("position", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
              autoincrement=False),
    sa.Column("event_id", sa.String(40), nullable=False, unique=True),
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("user_sub", sa.String(255), nullable=False),
    sa.Column("entitlement", sa.String(128), nullable=True),
    sa.Column("before", Json, nullable=True),
    sa.Column("after", Json, nullable=True),
    sa.Column("cause", Json, nullable=False),
    sa.Column("occurred_at", Time, nullable=False),
    sa.Index("ix_entitlement_events_user_sub_position", "user_sub", "position"),
)

# One row: the last feed position taken, and the time up to which entitlements that lapsed
# by time (no store event) have been reported expired.
feed_clock = sa.Table(
    "feed_clock", metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("position", sa.BigInteger(), nullable=False),
    sa.Column("expiries_through", Time, nullable=False),
)

# One row: the highest feed position the retention has deleted (gateway/store/retention.py). A
# cursor below it has missed events (410 ``cursor_expired``); kept apart from ``feed_clock``,
# whose row lock every writer of events takes, so a prune never makes them wait.
feed_retention = sa.Table(
    "feed_retention", metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("pruned_through", sa.BigInteger(), nullable=False),
)

# Where each consumer of the feed inside the gateway (e.g. the Cognito sign-out on
# revocation) has read up to: it goes on after ``position`` on its next run.
feed_cursors = sa.Table(
    "feed_cursors", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("position", sa.BigInteger(), nullable=False),
    sa.Column("updated_at", Time, nullable=False),
)

# Where each source's daily reconcile stopped: the next run reads the subscriptions due after
# ``last_key`` first, so a per-run limit never re-reads the same first keys every day.
reconcile_cursors = sa.Table(
    "reconcile_cursors", metadata,
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("last_key", sa.String(255), nullable=False),
    sa.Column("updated_at", Time, nullable=False),
)

# Outgoing webhooks: the endpoints, and each event's delivery to each endpoint.
webhook_endpoints = sa.Table(
    "webhook_endpoints", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("secrets", Json, nullable=False),
    sa.Column("event_types", Json, nullable=True),  # NULL: every type
    sa.Column("enabled", sa.Boolean(), nullable=False),
    sa.Column("origin", sa.String(16), nullable=False),  # "env" or "admin"
    sa.Column("position", sa.BigInteger(), nullable=False),  # the feed, fanned out up to here
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries", metadata,
    sa.Column("endpoint", sa.String(64), primary_key=True),
    sa.Column("position", sa.BigInteger(), primary_key=True),
    sa.Column("user_sub", sa.String(255), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending, delivered, failed
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("next_attempt_at", Time, nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("created_at", Time, nullable=False),
    # Fanned out, or replayed: a delivery is parked after failing for three days from here.
    sa.Column("queued_at", Time, nullable=False),
    sa.Column("delivered_at", Time, nullable=True),
    sa.Index("ix_webhook_deliveries_endpoint_user_sub", "endpoint", "user_sub", "position"),
    sa.Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    # The claim's check for an earlier delivery still to send (outbox.py): the rows to send only.
    sa.Index("ix_webhook_deliveries_undelivered", "endpoint", "user_sub", "position",
             postgresql_where=sa.text("status <> 'delivered'"), sqlite_where=sa.text("status <> 'delivered'")),
    # The feed's retention: a user's events from their first one still owed are kept.
    sa.Index("ix_webhook_deliveries_undelivered_user_sub", "user_sub", "position",
             postgresql_where=sa.text("status <> 'delivered'"), sqlite_where=sa.text("status <> 'delivered'")),
    # The retention's walk over delivered rows by age (gateway/store/retention.py).
    sa.Index("ix_webhook_deliveries_delivered_at", "delivered_at",
             postgresql_where=sa.text("delivered_at IS NOT NULL"), sqlite_where=sa.text("delivered_at IS NOT NULL")),
)

# Users deleted at their request: the deletion's report, and a tombstone that keeps a
# late delivery from granting the deleted user anything again.
deleted_users = sa.Table(
    "deleted_users", metadata,
    sa.Column("user_sub", sa.String(255), primary_key=True),
    sa.Column("deleted_at", Time, nullable=False),
    sa.Column("report", Json, nullable=False),
)

# The store accounts a deleted user was linked to (opaque ids, no personal data), kept
# when the links are erased: a later delivery that names one and changes nothing (Stripe's
# customer.deleted) is still known for the deleted user's and erased (``gateway.erasure``).
deleted_accounts = sa.Table(
    "deleted_accounts", metadata,
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("account", sa.String(255), primary_key=True),
    sa.Column("user_sub", sa.String(255), nullable=False),
)

# The subscriptions of deleted users the gateway has dealt with (``domain.deletion``): those
# the deletion stopped or reported, and those bought after it (late purchases), which the
# worker cancels where the store lets it (``gateway.late_purchases``) and the deletion's
# report, asked again, answers.
deleted_subscriptions = sa.Table(
    "deleted_subscriptions", metadata,
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("user_sub", sa.String(255), nullable=False, index=True),
    sa.Column("product_id", sa.String(255), nullable=True),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("found_at", Time, nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("next_attempt_at", Time, nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    # The worker or the deletion asked again stopping it now, until then (migration 0018).
    sa.Column("leased_until", Time, nullable=True),
    # The worker's walk over what is still to stop.
    sa.Index("ix_deleted_subscriptions_due", "next_attempt_at",
             postgresql_where=sa.text("outcome = 'pending'"), sqlite_where=sa.text("outcome = 'pending'")),
)

# The Checkout Sessions handed to each user (migration 0021): written under the user's lock
# against the tombstone before the URL is handed out, so the deletion, under the same lock,
# knows every one it must have expired (``gateway.checkout``, ``accounts.erase``).
checkout_sessions = sa.Table(
    "checkout_sessions", metadata,
    sa.Column("session_id", sa.String(255), primary_key=True),
    sa.Column("user_sub", sa.String(255), nullable=False, index=True),
    sa.Column("customer", sa.String(255), nullable=False),  # the Stripe customer it sells to
    sa.Column("created_at", Time, nullable=False, index=True),  # the retention deletes those Stripe expired
)

# The admin's sign-in attempts per client (an IPv4 address, or an IPv6 /64), counted here
# so that every worker of every instance counts against one limit (``login_attempts.py``).
# A row's window opens at its first attempt; a row whose window has passed is deleted.
admin_login_attempts = sa.Table(
    "admin_login_attempts", metadata,
    sa.Column("client", sa.String(64), primary_key=True),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("window_start", Time, nullable=False),
    sa.Index("ix_admin_login_attempts_window_start", "window_start"),
)
