"""The scale database's rows, as COPY text: a population of users, their subscriptions and
the deliveries that made them, each row a copy of one the gateway wrote for the same kind
of delivery (``scale_shapes.capture``), with identifiers and times of its own.

The population (``plan``), for ``users`` users:

- subscriptions: one per user, plus a fifth more (a second subscription for 20% of the
  users; 1% of those extra ones are Stripe subscriptions whose owner is not known yet),
  across the four sources by ``mix``;
- deliveries: ten per user in all. A subscription's story is a purchase, renewals (Stripe:
  ``invoice.paid`` and ``customer.subscription.updated`` each period), and a last delivery
  that leaves it renewing, cancelled at period end or in grace, expired, or refunded. Its
  length is exponential around the mean (at most 60). Stories that still grant end within
  the last 30-day period, so their expiries lie in the coming month; those that ended did so
  at any time over the last two years. One delivery in 5,000 failed for good, one in
  20,000 waits for its retry.
- user 0 is the heavy user: one subscription per source, 250 deliveries each (1,000 in
  all) over the last two years.

Every delivery that changed the user's entitlements has its feed event (``entitlement_events``),
and so has every entitlement that lapsed by time (the expiry sweep's); with ``webhooks``,
one endpoint has a delivery row for each feed event (delivered, but for the last 50, due,
and one in 10,000 failed). Deliveries are numbered, and the feed positioned, in the order
they were received, as the gateway numbers them: a user's deliveries are spread through the
whole log, not next to each other.
"""
from __future__ import annotations

import array
import dataclasses
import heapq
import random
import re
import time
from datetime import datetime, timezone
from typing import Iterator

from bench.scale_shapes import Capture

SOURCES = ("stripe", "apple", "google", "revenuecat")
KINDS = ("purchase", "renew", "cycle", "change", "end", "refund", "sweep")
PURCHASE, RENEW, CYCLE, CHANGE, END, REFUND, SWEEP = range(len(KINDS))
DAY = 86400.0
PERIOD = 30 * DAY
HISTORY = 730 * DAY  # how far back ended stories end, and the heavy user's story starts
HEAVY_EVENTS = 250  # per subscription of the heavy user: 1,000 in all
ENDINGS = ((RENEW, 0.55), (CHANGE, 0.10), (END, 0.32), (REFUND, 0.03))
FAILED_EVERY, DEFERRED_EVERY, WEBHOOK_FAILED_EVERY, WEBHOOKS_DUE = 5_000, 20_000, 10_000, 50
ENDPOINT = "scale"
GRANTING = ("active", "grace_period")
NULL = "\\N"
_MASK = (1 << 64) - 1
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@dataclasses.dataclass(frozen=True)
class Sizes:
    users: int
    # App Store deliveries weigh eight to twelve times the others (bench/README.md): a tenth keeps a
    # million users within this machine's disk.
    mix: tuple[tuple[str, float], ...] = (("stripe", 0.35), ("apple", 0.10), ("google", 0.30), ("revenuecat", 0.25))
    webhooks: bool = True
    seed: int = 21

    @property
    def subscriptions(self) -> int:
        return self.users * 6 // 5

    @property
    def events(self) -> int:
        return self.users * 10


# Identifiers: a bijection of the row's number, so every one is unique, and shaped like the store's.
def _mix(i: int, salt: int) -> int:
    """splitmix64's finalizer of ``i + salt``: a bijection of 64-bit numbers."""
    x = ((i + salt * 0x632BE59BD9B4E019) * 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _base62(x: int, width: int) -> str:
    out = []
    for _ in range(width):
        x, r = divmod(x, 62)
        out.append(_BASE62[r])
    return "".join(out)


def _uuid(i: int, salt: int) -> str:
    h = f"{_mix(i, salt):016x}{_mix(i, salt + 1):016x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


def user_sub(i: int) -> str:
    return _uuid(i, 1)


def customer(i: int) -> str:
    return "cus_" + _base62(_mix(i, 3), 14)


_TOKEN_TAIL = _base62(_mix(0, 9) << 64 | _mix(1, 9), 22) * 6


def subscription_key(source: str, i: int) -> str:
    """A Stripe ``sub_...``, an App Store originalTransactionId, a Play purchase token
    (about 150 characters, as Play's are), a RevenueCat original_transaction_id."""
    if source == "stripe":
        return "sub_1" + _base62(_mix(i, 4), 11) + _base62(_mix(i, 5), 12)
    if source == "google":
        x = _mix(i, 6)
        head = "".join("abcdefghijklmnopqrstuvwxyz"[(x >> (5 * k)) % 26] for k in range(12))
        return f"{head}{_base62(x, 12)}.AO-J1O{_base62(_mix(i, 7), 12)}{_TOKEN_TAIL[x % 20:][:110]}"
    return str((2_000_000_000_000_000 if source == "apple" else 3_000_000_000_000_000) + i)


def stripe_hash(i: int) -> str:
    return f"{_mix(i, 8) & 0xFFFFFFFFFFFF:012x}"


def alias(i: int) -> str:
    return f"$RCAnonymousID:{_mix(i, 10):016x}{_mix(i, 11):016x}"


def event_id(source: str, pk: int) -> str:
    if source == "stripe":
        return "evt_1" + _base62(_mix(pk, 12), 11) + _base62(_mix(pk, 13), 12)
    if source == "google":
        return str(10**15 + pk)
    found = _uuid(pk, 14)
    return found.upper() if source == "revenuecat" else found


def feed_event_id(position: int) -> str:
    return f"evt_{_mix(position, 16):016x}{_mix(position, 17):016x}"


_UTC = timezone.utc


def stamp(t: float) -> str:
    """A time as COPY text."""
    return datetime.fromtimestamp(t, _UTC).isoformat(" ")


def parse_stamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


# Templates: captured rows with slots where the capture's identifiers stood.
class Text:
    """One column's COPY text; ``render`` puts each slot's value in place."""

    def __init__(self, text: str, names: dict[str, str]) -> None:
        by_value = {value: slot for slot, value in names.items() if value}
        self.parts, self.slots = [text], []
        if by_value:
            pattern = re.compile("|".join(re.escape(v) for v in sorted(by_value, key=len, reverse=True)))
            self.parts, last = [], 0
            for found in pattern.finditer(text):
                self.parts.append(text[last:found.start()])
                self.slots.append(by_value[found.group()])
                last = found.end()
            self.parts.append(text[last:])
        self.constant = text if not self.slots else None

    def render(self, values: dict[str, str]) -> str:
        if self.constant is not None:
            return self.constant
        out = [self.parts[0]]
        for slot, part in zip(self.slots, self.parts[1:]):
            out += (values[slot], part)
        return "".join(out)


class Row:
    """A captured row: ``line(values, **columns)`` is its COPY line with the slots filled
    and the ``columns`` given replaced (their COPY text)."""

    def __init__(self, row: dict[str, str], names: dict[str, str]) -> None:
        self.raw = row
        self.columns = tuple(row)
        self.texts = {name: Text(text, names) for name, text in row.items()}

    def line(self, values: dict[str, str], **columns: str) -> str:
        return "\t".join(columns[c] if c in columns else self.texts[c].render(values) for c in self.columns) + "\n"


@dataclasses.dataclass
class Kind:
    """What one kind of delivery of one source left."""

    event: Row
    linked: bool
    feed: Row | None
    subscription: Row
    entitlement: Row
    identities: list[Row]
    expires_after: float  # the subscription's expiry, seconds after the delivery was received


def templates(captured: list[Capture]) -> tuple[dict[tuple[int, int], Kind], Row, Row]:
    """Per (source, kind) the first capture's rows; the sweep's feed row; the deferred event."""
    found: dict[tuple[int, int], Kind] = {}
    sweep = deferred = None
    for c in captured:
        event_rows = c.rows["events"]
        names = {**c.names, "event": event_rows[0]["event_id"] if event_rows else ""}
        feed_rows = c.rows["entitlement_events"]
        if feed_rows:
            names["feed"] = feed_rows[0]["event_id"]
        if c.kind == "sweep":
            row = feed_rows[0]
            sweep = Row(row, {"user": row["user_sub"], "feed": row["event_id"]})
            continue
        if c.kind == "deferred":
            deferred = Row(event_rows[0], names)
            continue
        key = (SOURCES.index(c.source), KINDS.index(c.kind))
        if key in found:
            continue
        sub = c.rows["subscriptions"][0]
        found[key] = Kind(
            event=Row(event_rows[0], names), linked=bool(c.rows["event_subscriptions"]),
            feed=Row(feed_rows[0], names) if feed_rows else None, subscription=Row(sub, names),
            entitlement=Row(c.rows["entitlements"][0], names), identities=[Row(r, names) for r in c.rows["identities"]],
            expires_after=parse_stamp(sub["expires_at"]) - parse_stamp(event_rows[0]["received_at"]))
    missing = [(s, k) for s in range(4) for k in (PURCHASE, RENEW, CHANGE, END) if (s, k) not in found]
    if missing or sweep is None or deferred is None:
        raise RuntimeError(f"captures missing: {missing}, sweep {sweep is not None}, deferred {deferred is not None}")
    return found, sweep, deferred


# The population.
@dataclasses.dataclass
class Plan:
    sizes: Sizes
    now: float
    user: array.array      # per subscription: its user's number, -1 when not known yet
    source: array.array    # per subscription: index in SOURCES
    count: array.array     # per subscription: deliveries
    last: array.array      # per subscription: the kind of its last delivery
    ends: array.array      # per subscription: when its last delivery was received
    period: array.array    # per subscription: seconds between renewals

    @property
    def heavy(self) -> tuple[int, ...]:
        """The heavy user's subscriptions."""
        return tuple(s for s in range(len(self.user)) if self.user[s] == 0)


def plan(sizes: Sizes, kinds: dict[tuple[int, int], Kind], now: float | None = None) -> Plan:
    rng = random.Random(sizes.seed)
    users, total = sizes.users, sizes.subscriptions
    now = time.time() if now is None else now
    sources = [SOURCES.index(s) for s, _ in sizes.mix]
    weights = [w for _, w in sizes.mix]
    owner = array.array("i", range(users))
    extra = total - users
    owner.extend([0, 0, 0])  # the heavy user: one subscription per source
    owner.extend(rng.sample(range(1, users), extra - 3))
    source = array.array("b", rng.choices(sources, weights, k=total))
    for n, s in enumerate((0, users, users + 1, users + 2)):
        source[s] = n
    for s in rng.sample(range(users + 3, total), extra // 100):  # Stripe subscriptions whose owner is unknown
        owner[s], source[s] = -1, 0
    count = _counts(rng, total, sizes.events - 4 * HEAVY_EVENTS, (0, users, users + 1, users + 2))
    last, ends, period = array.array("b"), array.array("d"), array.array("d")
    for s in range(total):
        heavy = owner[s] == 0
        p = HISTORY / HEAVY_EVENTS if heavy else PERIOD
        kind = PURCHASE if count[s] == 1 else RENEW if heavy else _ending(rng, source[s], kinds)
        active = kind in (PURCHASE, RENEW, CYCLE, CHANGE)
        last.append(kind)
        period.append(p)
        ends.append(now - rng.uniform(60, p) if active else now - rng.uniform(3600, HISTORY))
    return Plan(sizes, now, owner, source, count, last, ends, period)


def _counts(rng: random.Random, total: int, events: int, heavy: tuple[int, ...]) -> array.array:
    """Deliveries per subscription: exponential around the mean, 1 to 60, adding up to ``events``."""
    others = total - len(heavy)
    mean = events / others
    count = array.array("i", (min(60, 1 + int(rng.expovariate(1 / (mean - 1)))) for _ in range(total)))
    for s in heavy:
        count[s] = HEAVY_EVENTS
    left = events - (sum(count) - len(heavy) * HEAVY_EVENTS)
    step = 1 if left > 0 else -1
    while left:
        s = rng.randrange(total)
        if s not in heavy and 1 <= count[s] + step <= 60:
            count[s] += step
            left -= step
    return count


def _ending(rng: random.Random, source: int, kinds) -> int:
    kind = rng.choices([k for k, _ in ENDINGS], [w for _, w in ENDINGS])[0]
    return kind if (source, kind) in kinds else END


def kind_at(source: int, count: int, last: int, n: int) -> int:
    """The kind of a subscription's ``n``-th delivery: the purchase, renewals (Stripe's
    invoice and its subscription's event, turn about), the last one."""
    if n == 0:
        return PURCHASE
    if n == count - 1:
        return last
    return CYCLE if source == 0 and n % 2 == 0 else RENEW


def _renewals(source: int, n: int) -> int:
    """Renewals among deliveries 1 to ``n`` of the middle of a story."""
    return (n + 1) // 2 if source == 0 else n


def offset_at(source: int, count: int, last: int, period: float, n: int) -> float:
    """When the ``n``-th delivery came, in seconds after the purchase: each renewal opens a
    period (Stripe's subscription event follows its invoice by 5 s); a last delivery that
    is no renewal came mid-period."""
    if n == 0:
        return 0.0
    if n < count - 1:
        return _renewals(source, n) * period + (5.0 if kind_at(source, count, last, n) == CYCLE else 0.0)
    before = _renewals(source, n - 1)
    return (before + 1) * period if last == RENEW else before * period + period / 2


# The rows.
@dataclasses.dataclass
class Counts:
    events: int = 0
    links: int = 0
    feed: int = 0
    webhooks: int = 0


class Writers:
    """Where the stream's lines go: one callable per table, taking a COPY line."""

    def __init__(self, events, links, feed, webhooks) -> None:
        self.events, self.links, self.feed, self.webhooks = events, links, feed, webhooks


def _values(p: Plan, s: int) -> dict[str, str]:
    source, u = SOURCES[p.source[s]], p.user[s]
    found = {"user": user_sub(u) if u >= 0 else "", "key": subscription_key(source, s)}
    if source == "stripe":
        found.update(customer=customer(u) if u >= 0 else customer(10**9 + s), h=stripe_hash(s))
    elif source == "revenuecat":
        found["alias"] = alias(s)
    return found


def stream(p: Plan, kinds, sweep: Row, deferred: Row, out: Writers, seed: int = 7) -> Counts:
    """Every delivery in the order received, with its evidence link, its feed event and
    the endpoint's delivery of it; the sweep's feed events where an entitlement lapsed by
    time. Returns how many rows of each went out."""
    rng = random.Random(seed)
    counts = Counts()
    starts = array.array("d", (p.ends[s] - _last_offset(p, s) for s in range(len(p.user))))
    heap = [(starts[s], s, 0) for s in range(len(p.user))]
    heap += [(ends, s, -1) for s, ends in _lapsed_by_time(p, kinds).items()]
    heapq.heapify(heap)
    pk = position = 0
    while heap:
        at, s, n = heapq.heappop(heap)
        values = _values(p, s)
        if n == -1:  # the expiry sweep's event
            position += 1
            values["feed"] = feed_event_id(position)
            done = at + rng.uniform(0.1, 1.0)
            out.feed(sweep.line(values, position=str(position), occurred_at=stamp(done)))
            counts.feed += 1
            _webhook(out, counts, position, values["user"], done)
            continue
        source, count, last, period = p.source[s], p.count[s], p.last[s], p.period[s]
        if n + 1 < count:
            heapq.heappush(heap, (starts[s] + offset_at(source, count, last, period, n + 1), s, n + 1))
        kind = kinds[(source, kind_at(source, count, last, n))]
        pk += 1
        name = SOURCES[source]
        values["event"] = event_id(name, pk)
        counts.events += 1
        middle, known = 0 < n < count - 1, p.user[s] > 0
        failed, waiting = pk % FAILED_EVERY == 0, pk % DEFERRED_EVERY == 7
        if middle and known and (failed or waiting):  # never applied: no link, no feed
            extra = {c: deferred.texts[c].render({}) for c in ("status", "attempts", "last_error", "processed_at")}
            extra.update(status="failed" if failed else "deferred", attempts="12" if failed else "3",
                         next_attempt_at=NULL if failed else stamp(p.now + rng.uniform(60, 3600)))
            out.events(kind.event.line(values, id=str(pk), received_at=stamp(at), **extra))
            continue
        done = at + rng.uniform(0.005, 0.05)
        out.events(kind.event.line(values, id=str(pk), received_at=stamp(at), processed_at=stamp(done)))
        if kind.linked:
            out.links(f"{pk}\t{name}\t{values['key']}\n")
            counts.links += 1
        if kind.feed is not None and p.user[s] >= 0:
            position += 1
            values["feed"] = feed_event_id(position)
            out.feed(kind.feed.line(values, position=str(position), occurred_at=stamp(done)))
            counts.feed += 1
            _webhook(out, counts, position, values["user"], done)
    return counts


def _last_offset(p: Plan, s: int) -> float:
    return offset_at(p.source[s], p.count[s], p.last[s], p.period[s], p.count[s] - 1)


def _webhook(out: Writers, counts: Counts, position: int, user: str, at: float) -> None:
    """The endpoint's delivery of a feed event: delivered a moment later, one in 10,000
    failed for good (the last ones are made due once loaded: ``scale_load``)."""
    if out.webhooks is None:
        return
    queued = stamp(at + 0.5)
    if position % WEBHOOK_FAILED_EVERY == 0:
        line = f"{ENDPOINT}\t{position}\t{user}\tfailed\t30\t\\N\tHTTP 500 from the endpoint\t{queued}\t{queued}\t\\N\n"
    else:
        line = f"{ENDPOINT}\t{position}\t{user}\tdelivered\t1\t\\N\t\\N\t{queued}\t{queued}\t{stamp(at + 0.52)}\n"
    out.webhooks(line)
    counts.webhooks += 1


def _lapsed_by_time(p: Plan, kinds) -> dict[int, float]:
    """The subscriptions whose granting entitlement ran out with no delivery since: the
    expiry sweep reported each (subscription -> its expiry)."""
    found = {}
    for s, (user, expiry, status) in chosen(p, kinds).items():
        if status in GRANTING and expiry < p.now:
            found[s] = expiry
    return found


def expiry(p: Plan, kinds, s: int) -> float:
    kind = kinds[(p.source[s], p.last[s])]
    if p.last[s] in (PURCHASE, RENEW, CYCLE):
        return p.ends[s] + p.period[s]
    after = kind.expires_after
    if p.last[s] == CHANGE and after > PERIOD:  # cancelled at the period's end: some of the period is left
        after = PERIOD * ((p.ends[s] * 7919) % 1000) / 1000
    return p.ends[s] + after


def chosen(p: Plan, kinds) -> dict[int, tuple[int, float, str]]:
    """Per user, the subscription its entitlement row stands for (granting over not, then
    the latest expiry, as the gateway chooses): subscription -> (user, expiry, status)."""
    best: dict[int, tuple[tuple[bool, float], int, float, str]] = {}
    for s in range(len(p.user)):
        u = p.user[s]
        if u < 0:
            continue
        status = kinds[(p.source[s], p.last[s])].entitlement.raw["status"]
        ends = expiry(p, kinds, s)
        rank = (status in GRANTING and ends > p.now, ends)
        if u not in best or rank > best[u][0]:
            best[u] = (rank, s, ends, status)
    return {s: (u, ends, status) for u, (_, s, ends, status) in best.items()}


def subscriptions(p: Plan, kinds) -> Iterator[str]:
    for s in range(len(p.user)):
        kind, values = kinds[(p.source[s], p.last[s])], _values(p, s)
        row, ends = kind.subscription, p.ends[s]
        as_of = stamp(ends - 1)
        columns = {"expires_at": stamp(expiry(p, kinds, s)), "as_of": as_of, "updated_at": stamp(ends + 0.01)}
        for name in ("owner_as_of", "account_as_of"):
            if row.raw[name] != NULL:
                columns[name] = as_of
        if p.user[s] < 0:
            columns.update(user_sub=NULL, owner_as_of=NULL)
        yield row.line(values, **columns)


def entitlements(p: Plan, kinds) -> Iterator[str]:
    for s, (u, ends, _) in chosen(p, kinds).items():
        row = kinds[(p.source[s], p.last[s])].entitlement
        yield row.line(_values(p, s), expires_at=stamp(ends), updated_at=stamp(p.ends[s] + 0.01))


def identities(p: Plan, kinds) -> Iterator[str]:
    """Each Stripe customer once, each RevenueCat anonymous alias; as the purchases left them."""
    seen = set()
    for s in range(len(p.user)):
        u = p.user[s]
        if u < 0:
            continue
        values = _values(p, s)
        for row in kinds[(p.source[s], PURCHASE)].identities:
            account = row.texts["account"].render(values)
            if (row.raw["source"], account) in seen:
                continue
            seen.add((row.raw["source"], account))
            bought = stamp(p.ends[s] - _last_offset(p, s))
            yield row.line(values, as_of=bought, created_at=bought)
