"""Reads of a store made before the transaction that applies them: whether one may be
older than the state stored meanwhile, judged under the subscription's lock."""
from __future__ import annotations

from .model import Snapshot, Subscription, precedence


class StaleRead(Exception):
    """A state read from a store while another change of the same subscription was
    stored: which of the two is newer cannot be told, so the delivery reads it again."""


def stale_read(current: Subscription | None, snapshot: Snapshot) -> bool:
    """True when ``snapshot`` stands on a read (``read_since``) that may be older than the
    stored state, and says otherwise. The stored state may be the newer one when it was
    written after the read began (two reads of one store in flight together: a slow
    answer may carry the older state, whatever its stamp says; Stripe stamps an event to
    the second, so a change made just after the read began may carry an earlier stamp),
    or when it is stamped no older than the snapshot (an event's body judged newer on a
    look at the stored state that another writer has since overtaken). Read again once
    the stored state is committed, the store's answer is newer than it. Two reads that
    say the same need no order. A read that names a user other than the owner stored
    since it began may have been judged on the owner before it (a reconcile names one
    only while none is known): read again too. Decided under the subscription's lock,
    on the state held there."""
    if snapshot.read_since is None or current is None:
        return False
    written_since = current.updated_at is not None and current.updated_at >= snapshot.read_since
    if written_since and snapshot.user_sub and current.owner not in (None, snapshot.user_sub):
        return True
    if not (written_since or current.latest.as_of >= snapshot.as_of):
        return False
    return precedence(current.latest)[1:] != precedence(snapshot)[1:]  # the state but for its time
