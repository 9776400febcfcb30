"""What skipping the Cognito sign-out's gap in the feed reads (``jobs.sign_out.skip_gap``), for
both SQL stores, on the store's engine: the sign-out's cursor, and the users whose access may
have been revoked since a time, found in what the feed's retention leaves, since the gap's
``entitlement.revoked`` rows are gone.

An ``entitlement.revoked`` event is written when a user's entitlement row becomes ``revoked``
or disappears (``entitlement_events._type``), in the transaction that writes the row with
``updated_at`` its time. So a user revoked since then is one of:

- a row ``revoked`` now, written since: every later write of the user's rows stamps them
  again, so ``updated_at`` only grows (a row granting again since is not taken: its user is
  entitled now, and a later lapse of it would not sign them out either);
- a user deleted since (``deleted_users``): the deletion removes every row;
- a user a store's transfer (RevenueCat ``TRANSFER``, ``transfers``) moved purchases from
  since: their rows went with the purchases. The account moved from is the user's sub, or an
  alias the identities map to one.

Not found: a user whose last purchase a link moved to another user (a Stripe customer's
metadata naming someone else), whose former owner nothing keeps; a transfer the event log's
retention deleted (``EVENTS_RETENTION_DAYS``).
"""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from gateway.domain.deletion import ANONYMOUS_APP_USER
from gateway.domain.model import Status

from . import rows, tables
from .feed import PRUNED_THROUGH
from .sql import EngineWork

_C, _E, _D = tables.feed_cursors.c, tables.entitlements.c, tables.deleted_users.c
_T, _I = tables.transfers.c, tables.identities.c


class SignOutGap(EngineWork):
    def cursor(self, name: str) -> tuple[int, datetime, int] | None:
        """The consumer's position, the time it last moved, and the highest position the
        feed's retention deleted; None when the consumer never ran."""
        with self._transaction(readonly=True) as connection:
            found = connection.execute(sa.select(_C.position, _C.updated_at).where(_C.name == name)).first()
            pruned = connection.execute(PRUNED_THROUGH).scalar_one()
        return None if found is None else (found.position, rows.utc(found.updated_at), pruned)

    def revoked_since(self, since: datetime) -> list[str]:
        """The users whose access may have been revoked at or after ``since``, sorted."""
        revoked = sa.select(_E.user_sub).where(_E.status == Status.REVOKED.value, _E.updated_at >= since)
        deleted = sa.select(_D.user_sub).where(_D.deleted_at >= since)
        moved = sa.select(_T.account, _I.user_sub).select_from(
            tables.transfers.outerjoin(tables.identities, (_I.source == _T.source) & (_I.account == _T.account))
        ).where(_T.created_at >= since)
        with self._transaction(readonly=True) as connection:
            users = set(connection.execute(revoked).scalars()) | set(connection.execute(deleted).scalars())
            for account, user_sub in connection.execute(moved):
                users |= {user_sub} if user_sub else set()
                users |= set() if account.startswith(ANONYMOUS_APP_USER) else {account}
        return sorted(users)
