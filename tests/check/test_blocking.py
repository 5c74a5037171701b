"""A model that blocks where the scheduler cannot see: said at once, never a hang.

A task waiting on a threading.Lock blocks the one thread every task runs on.
explore() names such a primitive before the first schedule when a task can
reach it (check/blocking.py); one reached some other way (a global a helper
takes) ends at the watchdog's first look that finds the task's frame naming a
held lock (sync/watchdog.py), which releases it so the thread wakes.
"""

from __future__ import annotations

import queue
import sys
import threading
from typing import Any

import pytest

from pagemap.check import explore
from pagemap.check.blocking import HiddenBlocking, check_model, kind_of
from pagemap.sync.watchdog import BLOCKED_AFTER, Watchdog, held_locks


def _line_of(fn: Any, text: str) -> int:
    import inspect

    lines, start = inspect.getsourcelines(fn)
    return start + next(i for i, line in enumerate(lines) if text in line)


class Locked:
    def __init__(self, machine: Any) -> None:
        self.lock = threading.Lock()
        self.word = machine.executor.atomic(0, "word")


def bump_locked(s: Locked) -> None:
    with s.lock:
        s.word.store(s.word.load() + 1)


def test_a_state_lock_a_task_takes_is_named_before_any_schedule() -> None:
    with pytest.raises(HiddenBlocking) as info:
        explore(Locked, bump_locked, bump_locked, strategy="dfs")
    msg = str(info.value)
    assert f"{__file__}:{_line_of(bump_locked, 'with s.lock')} bump_locked" in msg
    assert "the state's `lock`, a threading.Lock" in msg
    assert "machine.executor.spinlock(name)" in msg


GLOBAL_LOCK = threading.Lock()


class Plain:
    def __init__(self, machine: Any) -> None:
        self.word = machine.executor.atomic(0, "word")


def _helper(s: Plain) -> None:
    with GLOBAL_LOCK:
        s.word.store(s.word.load() + 1)


def bump_through_helper(s: Plain) -> None:
    _helper(s)


def test_a_lock_reached_through_a_helper_ends_at_the_watchdogs_first_look() -> None:
    with pytest.raises(HiddenBlocking) as info:
        explore(Plain, bump_through_helper, bump_through_helper, strategy="dfs")
    msg = str(info.value)
    assert f"{__file__}:{_line_of(_helper, 'with GLOBAL_LOCK')}" in msg
    assert "waits on `GLOBAL_LOCK`, a threading.Lock" in msg
    assert not GLOBAL_LOCK.locked()  # released, and nothing left holding it


def test_the_watchdog_fires_on_a_held_lock_after_one_look_and_on_a_loop_after_its_seconds() -> None:
    dog = Watchdog(30.0)
    try:
        lock = threading.Lock()
        here = sys._getframe()
        assert not dog.should_fire(BLOCKED_AFTER, here)  # a plain frame: wait the 30 s
        assert dog.should_fire(30.0, here)
        with lock:
            assert dog.should_fire(BLOCKED_AFTER, sys._getframe())  # names `lock`, held
            assert [name for name, _ in held_locks(sys._getframe())] == ["lock"]
        assert not dog.should_fire(BLOCKED_AFTER, sys._getframe())  # released: a loop
    finally:
        dog.close()


@pytest.mark.parametrize(
    "make, kind",
    [
        (threading.Lock, "threading.Lock"),
        (threading.RLock, "threading.RLock"),
        (threading.Condition, "threading.Condition"),
        (threading.Semaphore, "threading.Semaphore"),
        (threading.Event, "threading.Event"),
        (queue.Queue, "queue.Queue"),
    ],
)
def test_every_kind_in_a_closure_is_named(make: Any, kind: str) -> None:
    primitive = make()

    def task(state: object) -> None:
        primitive.acquire() if hasattr(primitive, "acquire") else primitive.get()

    with pytest.raises(HiddenBlocking, match=f"`primitive` from its closure, a {kind}"):
        check_model(object(), [task])
    assert kind_of(primitive) is not None


def test_what_no_task_names_is_not_reported() -> None:
    class State:
        def __init__(self) -> None:
            self.bookkeeping = threading.Lock()  # used by no task
            self.value = 0

    def task(state: State) -> None:
        state.value += 1

    check_model(State(), [task])  # no exception
    assert kind_of(3) is None
