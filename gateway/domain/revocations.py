"""What refunds, chargebacks and voids took back, and what the stores gave back."""
from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the snapshot's module holds these sets: no import at run time
    from .model import Snapshot

#: The cause (``replaced:<new key>``) recorded on a purchase another one replaced (a Google
#: upgrade, by ``linkedPurchaseToken``): it grants no more, whatever the store goes on
#: showing of it, and nothing was refunded, so it reads as expired.
REPLACED = "replaced"


@dataclasses.dataclass(frozen=True)
class Revocations:
    """What refunds, chargebacks and voids took back, and what the stores gave back.

    Grow-only sets, so merging them is commutative and idempotent like the snapshot
    register: ``taken`` holds (cause, end of the period it took, id of the payment behind
    it when the store names one), ``given_back`` the causes a store reversed. A cause
    given back stays given back, whichever came first. A cause may be made of several
    returns, ``reason:id1+id2`` (a charge refunded in full by two refunds): it stands
    only while each of them does, so giving back ``reason:id1`` gives it back too.

    ``shown`` holds, per cause a store shows in every view of its period while it stands
    (``Snapshot.shows_revocation``: the App Store's ``revocationDate``), the stamp of the
    newest view that showed it, one per cause (the latest kept, so any order of the same
    views ends the same). A view of that period stamped after it that does not show the
    cause says the store reversed it, even when the reversal's own notification was lost.
    """

    taken: frozenset[tuple[str, datetime | None, str | None]] = frozenset()
    given_back: frozenset[str] = frozenset()
    shown: frozenset[tuple[str, datetime]] = frozenset()

    def seeing(self, snapshot: Snapshot) -> Revocations:
        taken, given_back, shown = self.taken, self.given_back, self.shown
        if snapshot.revokes:
            end, period_id = snapshot.revoked_period or (snapshot.expires_at, snapshot.period_id)
            taken = taken | {(snapshot.revokes, end, period_id)}
            if snapshot.shows_revocation:
                shown = _latest(shown, snapshot.revokes, snapshot.as_of)
        if snapshot.restores:
            given_back = given_back | {snapshot.restores}
        if (taken, given_back, shown) == (self.taken, self.given_back, self.shown):
            return self
        return Revocations(taken, given_back, shown)

    def holding(self, snapshot: Snapshot) -> str | None:
        """The cause that takes back the period ``snapshot`` shows, if one does.

        A revocation is final for its period: a later view of the same period (stores
        go on showing a subscription as it was before the refund) stays revoked, unless
        the store shows the revocation in its views (``shown``) and this one, stamped
        after the newest that showed it, does not: the store reversed it. Where
        both name the period (the App Store: the payment behind it; Stripe: when it
        began), another one grants (a resubscription to a shorter plan of the group, a
        renewal), and the same one stays revoked whatever its end (removing a Stripe
        ``cancel_at`` lengthens the period shown, not paid); where either does not, a
        period that ends later than the revoked one is a renewal, and grants.
        """
        # A refund or a void names what it took before a replacement does (``REPLACED``).
        for cause, period_end, period_id in sorted(self.taken, key=lambda item: (_replacing(item[0]), item[0])):
            if self.given(cause) or self.shown_reversed(cause, snapshot):
                continue
            if period_id and snapshot.period_id:
                if period_id != snapshot.period_id:
                    continue
            elif snapshot.expires_at and period_end and snapshot.expires_at > period_end:
                continue
            return cause
        return None

    def given(self, cause: str) -> bool:
        """Whether ``cause``, or one of the returns it is made of, was given back."""
        reason, _, ids = cause.partition(":")
        return cause in self.given_back or ("+" in ids and any(
            f"{reason}:{part}" in self.given_back for part in ids.split("+")))

    def shown_reversed(self, cause: str, view: Snapshot) -> bool:
        """Whether ``view``, which does not show ``cause``, shows content signed after every
        view that did (``Snapshot.shown_as_of``), of a store that shows it while it stands:
        the store reversed it since."""
        signed = view.shown_as_of
        return signed is not None and any(shown == cause and signed > at for shown, at in self.shown)


NO_REVOCATIONS = Revocations()


def _latest(shown: frozenset[tuple[str, datetime]], cause: str, at: datetime) -> frozenset[tuple[str, datetime]]:
    """``shown`` with ``cause`` seen at ``at``: its one stamp, the latest of those seen."""
    held = [entry for entry in shown if entry[0] == cause]
    if held and held[0][1] >= at:
        return shown
    return (shown - set(held)) | {(cause, at)}


def _replacing(cause: str) -> bool:
    return cause.partition(":")[0] == REPLACED
