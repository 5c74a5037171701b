"""DPOR is sound: on generated programs it reaches exactly the final states
that exhaustive DFS reaches, with no more schedules, bounded or not.

Each program is 2 or 3 tasks of a few operations over two shared atomic
words, one private word per task, and a lock (critical sections of one or two
operations).  A final state is the shared and private words and what every
task observed (each load's value, each CAS's outcome), so two schedules with
the same final state are indistinguishable to any oracle.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pagemap.check.explore import explore_model
from pagemap.check.model import FunctionModel
from pagemap.machine import Machine
from pagemap.sync.atomic import AtomicWord
from pagemap.sync.locks import SpinLock

Op = tuple[str, int, int, int]  # (kind, word, a, b); word 0, 1 shared, 2 private


@dataclass
class World:
    shared: list[AtomicWord]
    private: list[AtomicWord]
    lock: SpinLock
    seen: list[list[int]] = field(default_factory=list)


# Task 0: load x; lock { load x; load x }; lock { load x; load x }.
# Task 1: store x = 2; lock { load x; store x = 1 }.
# With one preemption, DFS reaches task 0 seeing x = 0 and then task 1's
# critical section whole before its own; DPOR once missed it.
ACQUIRE_TWICE: list[list[list[Op]]] = [
    [
        [("load", 0, 0, 0)],
        [("load", 0, 0, 0), ("load", 0, 0, 0)],
        [("load", 0, 0, 0), ("load", 0, 0, 0)],
    ],
    [[("store", 0, 2, 0)], [("load", 0, 0, 0), ("store", 0, 1, 0)]],
]


def test_acquire_twice_at_every_bound() -> None:
    for bound in (0, 1, 2, None):
        want, _ = explore_finals(ACQUIRE_TWICE, "dfs", bound)
        got, _ = explore_finals(ACQUIRE_TWICE, "dpor", bound)
        assert got == want, (bound, sorted(want - got))


def plain_op() -> st.SearchStrategy[Op]:
    word = st.integers(0, 2)
    val = st.integers(0, 2)
    return st.one_of(
        st.tuples(st.just("load"), word, st.just(0), st.just(0)),
        st.tuples(st.just("store"), word, val, st.just(0)),
        st.tuples(st.just("add"), word, st.integers(1, 2), st.just(0)),
        st.tuples(st.just("cas"), word, val, val),
    )


def task_ops() -> st.SearchStrategy[list[list[Op]]]:
    """A task: a list of blocks; a block of two or more ops runs under the lock."""
    block = st.one_of(
        st.lists(plain_op(), min_size=1, max_size=1), st.lists(plain_op(), min_size=2, max_size=2)
    )
    return st.lists(block, min_size=1, max_size=3)


def programs() -> st.SearchStrategy[list[list[list[Op]]]]:
    def small(p: list[list[list[Op]]]) -> bool:
        return sum(len(b) for t in p for b in t) <= (9 if len(p) == 2 else 7)

    return st.lists(task_ops(), min_size=2, max_size=3).filter(small)


def run_block(w: World, me: int, block: list[Op]) -> None:
    locked = len(block) > 1
    if locked:
        w.lock.acquire()
    for kind, word, a, b in block:
        target = w.shared[word] if word < 2 else w.private[me]
        if kind == "load":
            w.seen[me].append(target.load())
        elif kind == "store":
            target.store(a)
        elif kind == "add":
            target.fetch_add(a)
        else:
            w.seen[me].append(int(target.cas(a, b)))
    if locked:
        w.lock.release()


def build_model(program: list[list[list[Op]]], finals: set[Any]) -> FunctionModel[World]:
    def setup(machine: Machine) -> World:
        ex = machine.executor
        n = len(program)
        return World(
            [ex.atomic(0, "x"), ex.atomic(0, "y")],
            [ex.atomic(0, f"p{i}") for i in range(n)],
            ex.spinlock("L"),
            [[] for _ in range(n)],
        )

    def make_task(me: int) -> Any:
        def task(w: World) -> None:
            for block in program[me]:
                run_block(w, me, block)

        task.__name__ = f"t{me}"
        return task

    def check(w: World) -> bool:
        finals.add(
            (
                tuple(x.value for x in w.shared),
                tuple(p.value for p in w.private),
                tuple(tuple(s) for s in w.seen),
            )
        )
        return True

    tasks = tuple(make_task(i) for i in range(len(program)))
    return FunctionModel("generated", setup, tasks, check, cores=len(program), memory=8 * 4096)


def explore_finals(
    program: list[list[list[Op]]], strategy: str, bound: int | None
) -> tuple[set[Any], int]:
    finals: set[Any] = set()
    summary = explore_model(
        build_model(program, finals), strategy, budget=100_000, bound=bound, shrink=False
    )
    assert summary.trace is None, summary.trace
    assert summary.exhaustive
    return finals, summary.schedules


@settings(
    max_examples=int(os.environ.get("DPOR_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(programs())
def test_dpor_reaches_exactly_what_dfs_reaches(program: list[list[list[Op]]]) -> None:
    want, dfs_schedules = explore_finals(program, "dfs", None)
    got, dpor_schedules = explore_finals(program, "dpor", None)
    assert got == want
    assert dpor_schedules <= dfs_schedules


@settings(
    max_examples=int(os.environ.get("DPOR_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(programs(), st.integers(0, 2))
# The race that reverses an acquisition is direct only in a schedule past the
# bound; only the blocked task's pending step shows it (hb.pending_races).
@example(ACQUIRE_TWICE, 1)
def test_bounded_dpor_reaches_exactly_what_bounded_dfs_reaches(
    program: list[list[list[Op]]], bound: int
) -> None:
    want, dfs_schedules = explore_finals(program, "dfs", bound)
    got, dpor_schedules = explore_finals(program, "dpor", bound)
    assert got == want
    assert dpor_schedules <= dfs_schedules
