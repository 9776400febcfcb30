"""The soak's webhook receiver: the Procfile's worker sends every entitlement event to it
while the deliveries pour in, and at the end the events it got must replay into exactly
the entitlement table the API answers, and be the feed ``GET /v1/events`` pages."""
from __future__ import annotations

import json
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone

from gateway.store.outbox import Outbox

#: Near the final read, an entitlement may lapse between the API's answer and the expiry
#: sweep's report; only there may ``active`` and ``status`` differ.
LAPSE_MARGIN = timedelta(seconds=5)


def outbound_env(receiver) -> dict[str, str]:
    endpoint = {"name": "soak", "url": receiver.url, "secrets": receiver.secrets}
    return {"OUTBOUND_WEBHOOKS": json.dumps([endpoint]), "OUTBOUND_ALLOW_PRIVATE_TARGETS": "true",
            "OUTBOUND_TIMEOUT_SECONDS": "5"}


def _running(workers: list) -> None:
    assert all(worker.poll() is None for worker in workers), "a worker exited"


def wait_for_endpoint(app, workers: list, timeout: float = 30) -> None:
    """Until a worker has written the endpoint: events from then on are sent to it. Read
    in read-only transactions: on SQLite a writing one would hold the worker off."""
    outbox, deadline = Outbox.of(app.extensions["gateway"].store), time.monotonic() + timeout
    while not outbox.endpoints():
        _running(workers)
        assert time.monotonic() < deadline, "no worker wrote the endpoint"
        time.sleep(0.1)


def pull(client, api_key: str) -> list[dict]:
    found, cursor = [], "0"
    while True:
        answer = client.get(f"/v1/events?after={cursor}&limit=1000",
                            headers={"Authorization": f"Bearer {api_key}"}).get_json()
        found += answer["events"]
        cursor = answer["next"]
        if not answer["has_more"]:
            return found


def replay_check(app, receiver, workers: list, api_key: str, timeout: float = 180) -> str:
    """Wait until the receiver holds the whole feed, then check it; returns a summary."""
    client, started = app.test_client(), time.monotonic()
    while True:
        feed = pull(client, api_key)
        if {e["id"] for e in feed} <= {b["id"] for b in receiver.accepted()}:
            read_at = datetime.now(timezone.utc)
            tables = {user: answer(client, api_key, user) for user in {e["user_id"] for e in feed}}
            if len(pull(client, api_key)) == len(feed):  # nothing appended while the API was read
                break
        _running(workers)
        assert time.monotonic() - started < timeout, f"{len(receiver.accepted())} of {len(feed)} events arrived"
        time.sleep(0.2)
    got = receiver.accepted()
    ids = [b["id"] for b in got]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} of {len(set(ids))} events were delivered twice"
    assert {b["id"]: b for b in got} == {e["id"]: e for e in feed}, "the webhooks and the feed differ"
    by_user = defaultdict(list)
    for body in got:
        by_user[body["user_id"]].append(int(body["position"]))
    assert all(positions == sorted(positions) for positions in by_user.values()), "out of order for a user"
    near = _compare(replay(feed), tables, read_at)
    return f"{len(got)} events to {len(by_user)} users, each once and in order, replayed into the API's table " \
           f"({near} lapsing at the read)"


def answer(client, api_key: str, user: str) -> dict:
    return client.get(f"/v1/users/{user}/entitlements", headers={"Authorization": f"Bearer {api_key}"}) \
        .get_json()["entitlements"]


def replay(events: list[dict]) -> dict[str, dict]:
    """The entitlement table a receiver builds from the events: each ``after`` in order."""
    table: dict[str, dict] = defaultdict(dict)
    for event in sorted(events, key=lambda e: int(e["position"])):
        if event["type"] == "user.deleted":
            table[event["user_id"]].clear()
        elif event["after"] is None:
            table[event["user_id"]].pop(event["entitlement"], None)
        else:
            table[event["user_id"]][event["entitlement"]] = event["after"]
    return table


def _compare(replayed: dict[str, dict], tables: dict[str, dict], read_at: datetime) -> int:
    near, mismatches = 0, []
    for user, entitlements in tables.items():
        mine = replayed.get(user, {})
        for name in sorted(set(mine) | set(entitlements)):
            want, have = entitlements.get(name), mine.get(name)
            if want == have:
                continue
            if _lapsing(want, have, read_at):
                near += 1
                continue
            mismatches.append((user, name, want, have))
    assert not mismatches, f"{len(mismatches)} entitlements differ from the replayed events: {mismatches[:5]}"
    return near


def _lapsing(want: dict | None, have: dict | None, read_at: datetime) -> bool:
    if not (want and have and want["expires_at"]):
        return False
    same = {k: v for k, v in want.items() if k not in ("active", "status")} == \
        {k: v for k, v in have.items() if k not in ("active", "status")}
    ends = datetime.fromisoformat(want["expires_at"].replace("Z", "+00:00"))
    return same and abs(ends - read_at) <= LAPSE_MARGIN
