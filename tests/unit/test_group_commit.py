"""Group commit: every submitter gets its own answer, whoever ran its batch."""
from __future__ import annotations

import threading
import time

import pytest

from gateway.group_commit import GroupCommit


def run_concurrently(target, args_list):
    threads = [threading.Thread(target=target, args=args) for args in args_list]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads), "a submitter never got its answer"


def test_alone_an_item_is_a_batch_of_one():
    batches = []

    def run(slots):
        batches.append([slot.item for slot in slots])
        for slot in slots:
            slot.done(slot.item * 2)

    group = GroupCommit(run)
    assert [group.submit(n) for n in range(3)] == [0, 2, 4]
    assert batches == [[0], [1], [2]]


def test_items_arriving_while_a_batch_runs_share_the_next_one_and_each_gets_its_own_answer():
    batches, first_running, release = [], threading.Event(), threading.Event()

    def run(slots):
        batches.append(sorted(slot.item for slot in slots))
        if len(batches) == 1:
            first_running.set()
            release.wait(5)  # the first batch is slow: the others queue meanwhile
        for slot in slots:
            slot.done(("answer", slot.item))

    group, answers = GroupCommit(run), {}

    def submit(n):
        answers[n] = group.submit(n)

    first = threading.Thread(target=submit, args=(0,))
    first.start()
    assert first_running.wait(5)
    others = [threading.Thread(target=submit, args=(n,)) for n in range(1, 9)]
    for thread in others:
        thread.start()
    deadline = time.monotonic() + 5
    while len(group._queue) < 8 and time.monotonic() < deadline:  # all eight queued behind the first
        time.sleep(0.01)
    release.set()
    for thread in [first, *others]:
        thread.join(timeout=10)
    assert answers == {n: ("answer", n) for n in range(9)}
    assert batches == [[0], list(range(1, 9))]


def test_a_batch_is_never_larger_than_max_batch():
    sizes, gate = [], threading.Event()

    def run(slots):
        sizes.append(len(slots))
        gate.wait(5)
        for slot in slots:
            slot.done(slot.item)

    group = GroupCommit(run, max_batch=3)
    timer = threading.Timer(0.3, gate.set)
    timer.start()
    run_concurrently(group.submit, [(n,) for n in range(10)])
    assert sum(sizes) == 10 and max(sizes) <= 3


def test_an_error_fails_only_its_batch_and_the_next_batch_still_runs():
    calls = []

    def run(slots):
        calls.append([slot.item for slot in slots])
        if any(slot.item == "bad" for slot in slots):
            raise RuntimeError("the database went away")
        for slot in slots:
            slot.done("ok")

    group = GroupCommit(run)
    with pytest.raises(RuntimeError, match="went away"):
        group.submit("bad")
    assert group.submit("good") == "ok"
    assert calls == [["bad"], ["good"]]


def test_an_error_wakes_every_waiter_of_the_batch():
    release = threading.Event()

    def run(slots):
        if len(slots) > 1:
            raise ValueError("this batch failed")
        release.wait(5)
        slots[0].done("first")

    group, outcomes = GroupCommit(run), {}

    def submit(n):
        try:
            outcomes[n] = group.submit(n)
        except ValueError as exc:
            outcomes[n] = str(exc)

    first = threading.Thread(target=submit, args=(0,))
    first.start()
    time.sleep(0.1)
    rest = [threading.Thread(target=submit, args=(n,)) for n in (1, 2, 3)]
    for thread in rest:
        thread.start()
    time.sleep(0.2)
    release.set()
    for thread in [first, *rest]:
        thread.join(timeout=10)
    assert outcomes == {0: "first", 1: "this batch failed", 2: "this batch failed", 3: "this batch failed"}


def test_an_item_the_run_forgot_is_an_error_not_a_wait_for_ever():
    group = GroupCommit(lambda slots: None)
    with pytest.raises(RuntimeError, match="no answer"):
        group.submit("forgotten")
