"""The soak's oracle stands on its own: it imports nothing from the gateway, and it says
what the stores' rules say on small cases written out by hand."""
from __future__ import annotations

import ast
import dataclasses
import random
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.soak import oracle
from tests.soak.plan import CURRENT_ORDER, DAY, ENDED, LATEST_INVOICE, Fact, Final, Plan, Sub, plan

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2030, 1, 15, tzinfo=timezone.utc)
BASE = NOW - 2 * DAY
USER = "6f1c7d4e-3b2a-4c1d-9e8f-0a1b2c3d4e5f"


def _imports(module: str) -> set[str]:
    path = ROOT / (module.replace(".", "/") + ".py")
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{module}: relative import"
            found.add(node.module)
    return found


def test_the_oracle_and_the_plan_import_only_the_standard_library_and_each_other():
    seen, todo = set(), ["tests.soak.oracle"]
    while todo:
        module = todo.pop()
        seen.add(module)
        for name in _imports(module):
            top = name.split(".")[0]
            assert top != "gateway", f"{module} imports {name}"
            if name.startswith("tests.soak."):
                todo += [name] if name not in seen else []
            else:
                assert top in sys.stdlib_module_names or top == "__future__", f"{module} imports {name}"
    assert seen == {"tests.soak.oracle", "tests.soak.plan"}


def test_importing_the_oracle_loads_no_gateway_module():
    code = ("import sys, tests.soak.oracle; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('gateway', 'devtools')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def sub(source: str, index: int = 1, user: str = USER) -> Sub:
    key = str(3_000_000_000 + index) if source == "apple" else f"t-{source}-{index}"
    first = NOW + 10 * DAY + timedelta(seconds=index)
    return Sub(index, source, key, user, "cus_t", (BASE - 5 * DAY + timedelta(seconds=index), first,
                                                   first + 30 * DAY, first + 60 * DAY))


def fact(s: Sub, kind: str, second: int, **fields) -> Fact:
    fact.n += 1
    return Fact(fact.n, s, kind, BASE + timedelta(seconds=second), **fields)


fact.n = 0


def answer(facts: list[Fact], finals: dict | None = None, users=(USER,)) -> oracle.Row | None:
    subs = tuple({f.sub.key: f.sub for f in facts}.values())
    made = Plan(NOW, tuple(users), subs, tuple(facts), finals or {})
    return oracle.expected(made, NOW)[USER]


def stripe(*payments, state="active", period=1):
    s = sub("stripe")
    facts = [fact(s, "subscription", 1, state="active", period=1), fact(s, "subscription", 2, state=state,
                                                                        period=period)]
    facts += [fact(s, kind, 3 + i, invoice=invoice, dispute=dispute) for i, (kind, invoice, dispute)
              in enumerate(payments)]
    return answer(facts, {("stripe", s.key): Final(state, period)}), s


def test_stripe_newest_state_wins_and_a_full_refund_of_the_latest_invoice_revokes():
    row, s = stripe(state="past_due", period=2)
    assert row == oracle.Row(True, "grace_period", s.ends[2], "stripe")
    row, s = stripe(("refund", LATEST_INVOICE, None))
    assert row == oracle.Row(False, "revoked", s.ends[1], "stripe")


@pytest.mark.parametrize("payments", [
    [("refund", 0, None)],  # an older invoice's payment: the current period stands
    [("partial_refund", LATEST_INVOICE, None)],
    [("inquiry", LATEST_INVOICE, "dp_1")],
    [("dispute_opened", LATEST_INVOICE, "dp_1"), ("dispute_won", LATEST_INVOICE, "dp_1")],
    [("dispute_won", LATEST_INVOICE, "dp_1"), ("dispute_opened", LATEST_INVOICE, "dp_1")],  # in any order
    [("dispute_lost", 0, "dp_1")],
    [("inquiry", LATEST_INVOICE, "dp_1"), ("dispute_escalated", LATEST_INVOICE, "dp_1"),
     ("dispute_won", LATEST_INVOICE, "dp_1")],
])
def test_stripe_payments_that_leave_access(payments):
    row, s = stripe(*payments)
    assert row == oracle.Row(True, "active", s.ends[1], "stripe")


@pytest.mark.parametrize("payments", [
    [("dispute_opened", LATEST_INVOICE, "dp_1")],
    [("dispute_opened", LATEST_INVOICE, "dp_1"), ("dispute_lost", LATEST_INVOICE, "dp_1")],
    # a dispute won gives back what that dispute took, not a refund of the same invoice
    [("refund", LATEST_INVOICE, None), ("dispute_opened", LATEST_INVOICE, "dp_1"),
     ("dispute_won", LATEST_INVOICE, "dp_1")],
    [("dispute_opened", LATEST_INVOICE, "dp_1"), ("dispute_won", LATEST_INVOICE, "dp_2"),
     ("dispute_opened", LATEST_INVOICE, "dp_2")],
    [("inquiry", LATEST_INVOICE, "dp_1"), ("dispute_escalated", LATEST_INVOICE, "dp_1")],
    [("dispute_escalated", LATEST_INVOICE, "dp_1"), ("inquiry", LATEST_INVOICE, "dp_1")],  # in any order
])
def test_stripe_payments_that_revoke(payments):
    row, s = stripe(*payments)
    assert row == oracle.Row(False, "revoked", s.ends[1], "stripe")


@pytest.mark.parametrize("order, listed, status", [(CURRENT_ORDER, True, "revoked"), (0, True, "active"),
                                                   (1, True, "active"), (CURRENT_ORDER, False, "active")])
def test_google_void_revokes_only_the_current_order_listed_by_play(order, listed, status):
    s = sub("google")
    facts = [fact(s, "notify", 1), fact(s, "void", 2, order=order, listed=listed)]
    row = answer(facts, {("google", s.key): Final("SUBSCRIPTION_STATE_CANCELED", 2)})
    assert row == oracle.Row(status == "active", status, s.ends[2], "google")


def test_google_a_void_alone_listed_is_enough_to_see_the_subscription():
    s = sub("google")
    row = answer([fact(s, "void", 1, order=0)], {("google", s.key): Final("SUBSCRIPTION_STATE_ACTIVE", 1)})
    assert row == oracle.Row(True, "active", s.ends[1], "google")
    assert answer([fact(s, "void", 1, order=0, listed=False)],
                  {("google", s.key): Final("SUBSCRIPTION_STATE_ACTIVE", 1)}) is None


@pytest.mark.parametrize("source, state", [("apple", "renewing"), ("revenuecat", "RENEWAL")])
def test_refund_then_a_later_view_of_the_same_period_stays_revoked(source, state):
    s = sub(source)
    kind = "notification" if source == "apple" else "event"
    row = answer([fact(s, "refund", 1, period=2), fact(s, kind, 2, state=state, period=2)])
    # The App Store shows a refund while it stands: a later view without it tells a reversal.
    assert row == (oracle.Row(True, "active", s.ends[2], source) if source == "apple"
                   else oracle.Row(False, "revoked", s.ends[2], source))
    row = answer([fact(s, kind, 1, state=state, period=2), fact(s, "refund", 2, period=2)])  # the refund is newer
    assert row == oracle.Row(False, "revoked", s.ends[2], source)
    row = answer([fact(s, "refund", 1, period=2), fact(s, kind, 2, state=state, period=1)])  # an earlier period
    if source == "apple":  # Apple names the payment: another transaction's period is not the refunded one
        assert row == oracle.Row(True, "active", s.ends[1], source)
    else:
        assert row == oracle.Row(False, "revoked", s.ends[1], source)


@pytest.mark.parametrize("source, state", [("apple", "renewing"), ("revenuecat", "RENEWAL")])
def test_a_later_period_grants_again_and_a_reversal_gives_back(source, state):
    s = sub(source)
    kind = "notification" if source == "apple" else "event"
    row = answer([fact(s, "refund", 1, period=1), fact(s, kind, 2, state=state, period=2)])
    assert row == oracle.Row(True, "active", s.ends[2], source)
    row = answer([fact(s, "refund", 1, period=1), fact(s, "refund_reversed", 2, period=1)])
    assert row == oracle.Row(True, "active", s.ends[1], source)
    row = answer([fact(s, "refund_reversed", 1, period=1), fact(s, "refund", 2, period=1)])  # the refund is newer
    assert row == oracle.Row(False, "revoked", s.ends[1], source)


def test_apple_refund_of_a_period_that_had_ended_is_ignored():
    s = sub("apple")
    row = answer([fact(s, "notification", 1, state="renewing", period=1), fact(s, "refund", 2, period=ENDED)])
    assert row == oracle.Row(True, "active", s.ends[1], "apple")


def test_equal_timestamps_the_more_final_state_wins():
    s = sub("revenuecat")
    row = answer([fact(s, "event", 5, state="EXPIRATION", period=ENDED),
                  fact(s, "event", 5, state="RENEWAL", period=3)])
    assert row == oracle.Row(False, "expired", s.ends[ENDED], "revenuecat")


def test_the_row_is_the_granting_subscription_with_the_latest_end_else_the_latest_end():
    a, b, c = sub("revenuecat", 1), sub("revenuecat", 2), sub("apple", 3)
    row = answer([fact(a, "event", 1, state="RENEWAL", period=1), fact(b, "event", 2, state="CANCELLATION", period=2),
                  fact(c, "refund", 3, period=3)])
    assert row == oracle.Row(True, "active", b.ends[2], "revenuecat")
    row = answer([fact(a, "event", 1, state="EXPIRATION", period=ENDED), fact(c, "refund", 3, period=3)])
    assert row == oracle.Row(False, "revoked", c.ends[3], "apple")
    assert answer([fact(sub("stripe", 4, user="someone-else"), "inquiry", 1)], users=(USER, "someone-else")) is None


def test_a_plan_has_one_answer_whatever_the_order_of_its_facts():
    """The soak sends the facts shuffled: the oracle's answer must not depend on their order
    (it used to compare ``expected`` with itself, which could not fail)."""
    made = plan(600)
    found = oracle.outcomes(made)
    answer = oracle.expected(made, made.now, found)
    for seed in range(3):
        facts = random.Random(seed).sample(made.facts, len(made.facts))
        assert oracle.expected(dataclasses.replace(made, facts=tuple(facts)), made.now) == answer
    assert sum(row is not None and row.active for row in answer.values()) > 0
    assert sum(c for case, c in oracle.coverage(found).items() if "revoked" in case) > 0
