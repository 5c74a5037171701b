"""Atomics, locks, semaphores, and the two executors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from pagemap import Deadlock, Machine, StepBudgetExceeded, Strategy, Task
from pagemap.sync.atomic import AtomicWord
from pagemap.sync.executor import Executor
from pagemap.sync.sim import SeededRandom, SimExecutor
from pagemap.sync.threads import ThreadExecutor
from tests.conftest import SIM_SEEDS, sim

EXECUTORS = ["threads", "sim"]


@pytest.mark.parametrize("kind", EXECUTORS)
def test_atomic_word_operations(kind: str) -> None:
    ex: Executor = ThreadExecutor() if kind == "threads" else SimExecutor()
    w = ex.atomic(5, "w")
    assert w.load() == 5
    assert w.fetch_add(3) == 5 and w.load() == 8
    assert w.fetch_or(0x10) == 8 and w.load() == 0x18
    assert w.fetch_and(~0x8) == 0x18 and w.load() == 0x10
    assert w.swap(7) == 0x10 and w.load() == 7
    assert w.cas(7, 9) and not w.cas(7, 11) and w.load() == 9
    w.store(0)
    assert w.fetch_add(-1) == 0 and w.load() == 2**64 - 1  # 64-bit wrap-around
    w.store(2**64 + 3)
    assert w.load() == 3


def lost_update_machine(kind: str, seed: int, locked: bool) -> tuple[Machine, AtomicWord]:
    """Three tasks each add 1 three times, read-then-write, with or without a lock."""
    machine = Machine(cores=2, memory="64KiB", executor=kind, seed=seed)
    lock = machine.executor.spinlock("counter lock")
    word = machine.executor.atomic(0, "counter")

    def bump() -> None:
        for _ in range(3):
            if locked:
                lock.acquire()
            v = word.load()
            word.store(v + 1)
            if locked:
                lock.release()

    for _ in range(3):
        machine.spawn(bump)
    return machine, word


def test_sim_finds_the_lost_update_and_the_lock_prevents_it() -> None:
    lost = 0
    for seed in SIM_SEEDS:
        machine, word = lost_update_machine("sim", seed, locked=False)
        machine.run()
        lost += word.value != 9
        machine, word = lost_update_machine("sim", seed, locked=True)
        machine.run()
        assert word.value == 9
    assert lost > 0  # the scheduler really interleaves at atomic operations


def test_spinlock_excludes_under_threads() -> None:
    machine, word = lost_update_machine("threads", 0, locked=True)
    machine.run()
    assert word.value == 9


@pytest.mark.parametrize("kind", EXECUTORS)
def test_semaphore_orders_tasks(kind: str) -> None:
    machine = Machine(cores=2, memory="64KiB", executor=kind, seed=3)
    sem = machine.executor.semaphore(0, "ready")
    log: list[str] = []

    def waiter() -> None:
        sem.down()
        log.append("woke")

    def poster() -> None:
        log.append("posted")
        sem.up()

    machine.spawn(waiter)
    machine.spawn(poster)
    machine.run()
    assert log == ["posted", "woke"]
    assert sem.count == 0


def test_deadlock_is_reported_with_each_wait() -> None:
    machine = sim(0)
    a = machine.executor.spinlock("A")
    b = machine.executor.spinlock("B")
    gate = machine.executor.semaphore(0, "gate")

    def one() -> None:
        a.acquire()
        gate.up()
        gate.up()
        b.acquire()

    def two() -> None:
        gate.down()
        b.acquire()
        a.acquire()

    machine.spawn(one, name="one")
    machine.spawn(two, name="two")
    with pytest.raises(Deadlock) as info:
        machine.run()
    text = str(info.value)
    assert "one waits on spinlock B" in text and "two waits on spinlock A" in text


def test_step_budget_stops_a_livelock() -> None:
    machine = Machine(cores=1, memory="64KiB", executor="sim", seed=0, max_steps=1000)
    flag = machine.executor.atomic(0, "never")

    def spin() -> None:
        while not flag.load():
            pass

    machine.spawn(spin)
    machine.spawn(spin)
    with pytest.raises(StepBudgetExceeded, match="1000"):
        machine.run()


@pytest.mark.parametrize("kind", EXECUTORS)
def test_first_task_exception_is_reraised_after_the_rest_finish(kind: str) -> None:
    machine = Machine(cores=2, memory="64KiB", executor=kind, seed=0)
    done: list[int] = []

    def fails() -> None:
        raise ValueError("boom")

    def works(i: int) -> None:
        done.append(i)

    machine.spawn(fails)
    machine.spawn(works, 1)
    machine.spawn(works, 2)
    with pytest.raises(ValueError, match="boom"):
        machine.run()
    assert sorted(done) == [1, 2]


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit])
def test_the_sim_never_takes_a_stop_for_a_tasks_failure(stop: type[BaseException]) -> None:
    """Ctrl-C (or sys.exit) landing inside a task ends the whole run at once: it
    is not recorded as that task's failure while the others run on."""
    for seed in range(50):
        machine = Machine(cores=2, memory="64KiB", executor="sim", seed=seed)
        word = machine.executor.atomic(0, "w")
        at_stop: list[int] = []

        def interrupted() -> None:
            word.fetch_add(1)
            at_stop.append(word.value)
            raise stop()

        def busy() -> None:
            for _ in range(20):
                word.fetch_add(1)

        machine.spawn(interrupted)
        machine.spawn(busy)
        with pytest.raises(stop):
            machine.run()
        assert machine.executor.tasks[0].exc is None  # not a failure of the task
        assert word.value == at_stop[0]  # nothing ran after the stop


def test_a_stop_inside_an_exploration_ends_it(tmp_path: Path) -> None:
    from pagemap.check import explore

    class State:
        def __init__(self, machine: Machine) -> None:
            self.word = machine.executor.atomic(0, "w")

    def stopper(s: State) -> None:
        s.word.fetch_add(1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        explore(State, stopper, stopper, strategy="dfs", trace_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # no counterexample was made of it


@pytest.mark.parametrize("kind", EXECUTORS)
def test_tasks_can_spawn_tasks_and_know_their_core(kind: str) -> None:
    machine = Machine(cores=3, memory="64KiB", executor=kind, seed=0)
    cores: list[int] = []

    def child() -> None:
        cores.append(machine.current_core())

    def parent() -> None:
        cores.append(machine.current_core())
        machine.spawn(child, core=2)

    machine.spawn(parent, core=1)
    machine.run()
    assert sorted(cores) == [1, 2]
    assert machine.current_core() == 0  # outside any task


class Picks(Strategy):
    """Records the task picked at each choice, or follows a recorded list."""

    def __init__(self, inner: Strategy | None = None, follow: list[int] | None = None) -> None:
        self.inner = inner
        self.follow = follow
        self.picked: list[int] = []

    def pick(self, runnable: Sequence[Task], current: Task | None, kind: str) -> Task:
        if self.follow is not None:
            want = self.follow[len(self.picked)]
            nxt = next(t for t in runnable if t.tid == want)
        else:
            assert self.inner is not None
            nxt = self.inner.pick(runnable, current, kind)
        self.picked.append(nxt.tid)
        return nxt


def schedule_of(seed: int) -> tuple[list[int], int]:
    machine, _ = lost_update_machine("sim", seed, locked=True)
    ex = machine.executor
    assert isinstance(ex, SimExecutor)
    picks = Picks(ex.strategy)
    ex.strategy = picks
    machine.run()
    return picks.picked, ex.steps


def test_same_seed_same_schedule() -> None:
    first = schedule_of(42)
    assert first == schedule_of(42)
    assert len(first[0]) > 5
    # And the seed matters: other seeds give other schedules.
    assert len({tuple(schedule_of(s)[0]) for s in range(20)}) > 10


def test_a_schedule_is_a_function_of_the_choices() -> None:
    schedule, steps = schedule_of(7)
    machine, _ = lost_update_machine("sim", 0, locked=True)
    ex = machine.executor
    assert isinstance(ex, SimExecutor)
    follow = Picks(follow=schedule)
    ex.strategy = follow
    machine.run()
    assert follow.picked == schedule
    assert ex.steps == steps


def test_blocking_outside_a_task_is_an_error() -> None:
    machine = sim(0)
    lock = machine.executor.spinlock("L")
    lock.acquire()
    with pytest.raises(RuntimeError, match="outside any task"):
        lock.acquire()


def test_unknown_executor_and_bad_core_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown executor"):
        Machine(executor="fibers")
    machine = Machine(cores=2, memory="64KiB")
    with pytest.raises(ValueError, match="core 5"):
        machine.spawn(lambda: None, core=5)


@pytest.mark.parametrize("kind", EXECUTORS)
def test_timed_down_gives_up_or_wakes(kind: str) -> None:
    machine = Machine(cores=2, memory="64KiB", executor=kind, seed=5)
    never = machine.executor.semaphore(0, "never")
    soon = machine.executor.semaphore(0, "soon")
    got: dict[str, bool] = {}

    def sleeper() -> None:
        got["never"] = never.down_timeout(0.01)
        got["soon"] = soon.down_timeout(60.0)

    def poster() -> None:
        soon.up()

    machine.spawn(sleeper)
    machine.spawn(poster)
    machine.run()
    assert got == {"never": False, "soon": True}


def test_sim_clock_jumps_when_everyone_sleeps() -> None:
    machine = sim(0)
    ex = machine.executor
    assert isinstance(ex, SimExecutor)
    sem = ex.semaphore(0, "s")
    woke: list[int] = []

    def nap(seconds: float) -> None:
        sem.down_timeout(seconds)
        woke.append(ex.now)

    machine.spawn(nap, 2.0)
    machine.spawn(nap, 1.0)
    machine.run()
    # Virtual time: a step is a microsecond; the shorter nap ends first.
    assert woke[0] >= 1_000_000 and woke[1] >= 2_000_000 and woke[0] < woke[1]


@pytest.mark.parametrize("kind", ["threads", "sim"])
def test_batch_operations_of_an_atomic_array_are_the_single_ones_in_turn(kind: str) -> None:
    executor: Executor = (
        ThreadExecutor() if kind == "threads" else SimExecutor(SeededRandom(0), None)
    )
    words = executor.atomic_array(8, "w")
    locks = executor.lock_table(8, "l")
    for i in range(8):
        words.reset(i, i)
    assert words.fetch_add_many([1, 3, 3, 7], -1) == [1, 3, 2, 7]
    assert [words.value(i) for i in range(8)] == [0, 0, 2, 1, 4, 5, 6, 6]
    words.reset_many([0, 2, 4], 9)
    locks.reset_many([1, 2], 0)
    assert [words.value(i) for i in (0, 2, 4)] == [9, 9, 9]
    assert [locks.count(i) for i in range(4)] == [1, 0, 0, 1]
