"""The SimExecutor's greenlet pool (sync/pool.py): runs on reused greenlets
behave as runs on fresh ones, and a pool keeps nothing it should not."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Sequence

import greenlet
import pytest

from pagemap import Deadlock, Strategy, Task
from pagemap.sync.locks import SpinLock
from pagemap.sync.pool import TaskPool
from pagemap.sync.sim import SimExecutor


class Alternate(Strategy):
    """Take turns at every choice; a pool of its own or none."""

    def __init__(self, pool: TaskPool | None) -> None:
        self.pool = pool
        self.n = 0

    def pick(self, runnable: Sequence[Task], current: Task | None, kind: str) -> Task:
        self.n += 1
        return runnable[self.n % len(runnable)]


def counting_run(pool: TaskPool | None, deadlock: bool = False) -> tuple[list[str], SimExecutor]:
    """Two tasks taking a lock in turn (or two locks in opposite orders)."""
    sched = SimExecutor(Alternate(pool), clock="idle")
    a, b = sched.spinlock("a"), sched.spinlock("b")
    word = sched.atomic(0, "w")
    seen: list[str] = []

    def task(name: str, first: SpinLock, second: SpinLock) -> None:
        for _ in range(3):
            with first, second:
                seen.append(f"{name}{word.fetch_add(1)}")

    sched.spawn(task, ("x", a, b), 0, "x")
    sched.spawn(task, ("y", b, a) if deadlock else ("y", a, b), 1, "y")
    return seen, sched


def test_a_pool_reuses_its_greenlets_and_runs_the_same_schedules() -> None:
    pool = TaskPool()
    fresh, sched = counting_run(None)
    sched.run()
    glets = set()
    for _ in range(3):
        seen, sched = counting_run(pool)
        sched.run()
        assert seen == fresh
        glets |= {id(t.glet) for t in sched.tasks}
        assert all(t.glet is not None and not t.glet.dead for t in sched.tasks)
    assert len(glets) == 2  # the second and third runs took the first's greenlets


def test_a_deadlocked_run_gives_its_greenlets_back_unwound() -> None:
    pool = TaskPool()
    _, sched = counting_run(None, deadlock=True)
    with pytest.raises(Deadlock) as fresh:
        sched.run()
    _, sched = counting_run(pool, deadlock=True)
    with pytest.raises(Deadlock) as pooled:
        sched.run()
    assert str(pooled.value) == str(fresh.value)
    assert len(pool._idle) == 2  # both unwound by the teardown, and free again
    seen, sched = counting_run(pool)
    sched.run()
    assert len(seen) == 6


def test_an_idle_greenlet_keeps_nothing_of_its_run_and_a_dropped_pool_frees_them() -> None:
    pool = TaskPool()
    _, sched = counting_run(pool)
    sched.run()
    ref = weakref.ref(sched)
    glet = weakref.ref(sched.tasks[0].glet)
    del sched
    gc.collect()
    assert ref() is None  # the idle greenlets do not hold the executor
    assert glet() is not None
    del pool
    gc.collect()
    assert glet() is None


def test_another_thread_gets_greenlets_of_no_pool() -> None:
    pool = TaskPool()
    got: list[greenlet.greenlet] = []

    def other() -> None:
        _, sched = counting_run(pool)
        sched.run()
        got.extend(t.glet for t in sched.tasks if t.glet is not None)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert len(got) == 2 and all(g.dead for g in got)
    assert not pool._idle
