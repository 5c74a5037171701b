"""How kernel code is executed: on OS threads, or under a deterministic scheduler.

The kernel never asks which executor it runs on.  It gets its atomics, locks
and semaphores from an `Executor`, and calls `point()` at each hardware access
that can race (PTE, TLB and frame accesses).  Everything else follows:

- `ThreadExecutor`: a task is an OS thread; preemption is the OS's.
- `SimExecutor`: a task is a greenlet and exactly one runs at a time.  At every
  scheduling point a `Strategy` picks which runnable task goes next; a task
  blocked on a held lock or an empty semaphore is not runnable.  Nothing here
  reads the clock or an unseeded random source, so the same strategy and seed
  give the same schedule, bit for bit.
"""

from __future__ import annotations

import bisect
import contextlib
import heapq
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import greenlet

from pagemap.sync.atomic import AtomicWord, SimAtomicWord, ThreadAtomicWord
from pagemap.sync.locks import (
    Semaphore,
    SimSemaphore,
    SimSpinLock,
    SpinLock,
    ThreadSemaphore,
    ThreadSpinLock,
)

StepHook = Callable[["Task", str, object], None]


class Deadlock(Exception):
    """Every unfinished task is blocked; the message names what each waits on."""

    def __init__(self, waits: Sequence[tuple[str, str]]) -> None:
        self.waits = list(waits)
        lines = "; ".join(f"{name} waits on {what}" for name, what in self.waits)
        super().__init__(f"deadlock: every task is blocked: {lines}")


class StepBudgetExceeded(Exception):
    """The run took more scheduling points than its budget allows."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        super().__init__(f"step budget of {budget} scheduling points exceeded (livelock?)")


class Task:
    """One thread of kernel execution, pinned to a core."""

    __slots__ = ("args", "core", "done", "exc", "fn", "glet", "name", "result", "tid", "waiting_on")

    def __init__(
        self, tid: int, name: str, core: int, fn: Callable[..., Any], args: tuple[Any, ...]
    ) -> None:
        self.tid = tid
        self.name = name
        self.core = core
        self.fn = fn
        self.args = args
        self.done = False
        self.result: Any = None
        self.exc: BaseException | None = None
        self.glet: greenlet.greenlet | None = None
        self.waiting_on: str | None = None

    def __lt__(self, other: Task) -> bool:
        return self.tid < other.tid

    def __repr__(self) -> str:
        return f"Task({self.tid}, {self.name!r}, core={self.core})"


class Strategy:
    """Chooses the next task at each scheduling point that offers a choice."""

    def start(self, sched: SimExecutor) -> None:
        """Called once when a run begins."""

    def pick(self, runnable: Sequence[Task], current: Task | None) -> Task:
        """`runnable` is in task-id order and has at least two tasks; `current`
        is the task at the scheduling point, or None when it cannot go on."""
        raise NotImplementedError


class RandomStrategy(Strategy):
    """Uniformly random among the runnable tasks, from a seeded generator."""

    def __init__(self, seed: int | None = 0) -> None:
        self.rng = random.Random(seed)

    def pick(self, runnable: Sequence[Task], current: Task | None) -> Task:
        return runnable[self.rng.randrange(len(runnable))]


class ReplayStrategy(Strategy):
    """Follows a recorded schedule (task ids, one per choice), then falls back."""

    def __init__(self, schedule: Sequence[int], fallback: Strategy | None = None) -> None:
        self.schedule = list(schedule)
        self.pos = 0
        self.fallback = fallback or RandomStrategy(0)
        self.diverged = False

    def pick(self, runnable: Sequence[Task], current: Task | None) -> Task:
        if self.pos < len(self.schedule):
            want = self.schedule[self.pos]
            self.pos += 1
            for task in runnable:
                if task.tid == want:
                    return task
            self.diverged = True
        return self.fallback.pick(runnable, current)


class Executor:
    """What the kernel may ask of the way it is executed."""

    name = "abstract"

    def __init__(self) -> None:
        self.tasks: list[Task] = []

    # -- primitives -----------------------------------------------------------
    def atomic(self, value: int, name: str) -> AtomicWord:
        raise NotImplementedError

    def spinlock(self, name: str) -> SpinLock:
        raise NotImplementedError

    def semaphore(self, count: int, name: str) -> Semaphore:
        raise NotImplementedError

    def point(self, kind: str, obj: object) -> None:
        """A scheduling point for an access the primitives above do not cover."""

    def relax(self) -> None:
        """Called by a task that is waiting for others to make progress (a
        spin-retry loop); lets them run."""

    # -- tasks ----------------------------------------------------------------
    def current_task(self) -> Task | None:
        raise NotImplementedError

    def spawn(
        self, fn: Callable[..., Any], args: tuple[Any, ...], core: int, name: str | None
    ) -> Task:
        task = Task(len(self.tasks), name or f"task{len(self.tasks)}", core, fn, args)
        self.tasks.append(task)
        self._start(task)
        return task

    def _start(self, task: Task) -> None:
        raise NotImplementedError

    def run(self) -> None:
        raise NotImplementedError


class ThreadExecutor(Executor):
    """Tasks are OS threads; atomics are made atomic with a lock."""

    name = "threads"

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()
        self._pending: list[threading.Thread] = []
        self._threads: list[threading.Thread] = []
        self._failures: list[Task] = []
        self._failures_lock = threading.Lock()
        self._running = False

    def atomic(self, value: int, name: str) -> AtomicWord:
        return ThreadAtomicWord(value, name)

    def spinlock(self, name: str) -> SpinLock:
        return ThreadSpinLock(name)

    def semaphore(self, count: int, name: str) -> Semaphore:
        return ThreadSemaphore(count, name)

    def current_task(self) -> Task | None:
        task: Task | None = getattr(self._local, "task", None)
        return task

    def relax(self) -> None:
        time.sleep(0)

    def _body(self, task: Task) -> None:
        self._local.task = task
        try:
            task.result = task.fn(*task.args)
        except BaseException as exc:
            task.exc = exc
            with self._failures_lock:
                self._failures.append(task)
        finally:
            task.done = True

    def _start(self, task: Task) -> None:
        thread = threading.Thread(target=self._body, args=(task,), name=task.name, daemon=True)
        self._threads.append(thread)
        if self._running:
            thread.start()
        else:
            self._pending.append(thread)

    def run(self) -> None:
        self._running = True
        try:
            for thread in self._pending:
                thread.start()
            self._pending.clear()
            # Tasks may spawn tasks; join until no thread is left.
            while self._threads:
                self._threads.pop(0).join()
        finally:
            self._running = False
        if self._failures:
            first = self._failures[0]
            self._failures.clear()
            assert first.exc is not None
            raise first.exc


class SimExecutor(Executor):
    """The SimExecutor: one greenlet at a time, switched at scheduling points."""

    name = "sim"

    def __init__(self, strategy: Strategy | None = None, max_steps: int | None = None) -> None:
        super().__init__()
        self.strategy = strategy or RandomStrategy(0)
        self.max_steps = max_steps if max_steps is not None else sys.maxsize
        self.steps = 0
        self.schedule: list[int] = []
        self.runnable: list[Task] = []
        self.current: Task | None = None
        self.outside = Task(-1, "outside", 0, lambda: None, ())
        self.on_step: StepHook | None = None
        self._hub: greenlet.greenlet | None = None
        self._abort: BaseException | None = None
        self._failures: list[Task] = []
        # Timed waits.  The sim has no clock but its own: one scheduling step
        # is one microsecond of virtual time, and when every task is asleep
        # the clock jumps to the next deadline (a discrete-event simulation).
        # Virtual time is `now` = steps + skipped; jumps do not count against
        # the step budget.  _next_deadline is in steps, for point()'s one compare.
        self._timers: list[tuple[int, int, Task, list[Task]]] = []
        self._timer_seq = 0
        self._skipped = 0
        self._next_deadline = sys.maxsize
        self._timed_out: set[int] = set()

    # -- primitives -----------------------------------------------------------
    def atomic(self, value: int, name: str) -> AtomicWord:
        return SimAtomicWord(value, name, self)

    def spinlock(self, name: str) -> SpinLock:
        return SimSpinLock(name, self)

    def semaphore(self, count: int, name: str) -> Semaphore:
        return SimSemaphore(count, name, self)

    def current_task(self) -> Task | None:
        return self.current

    def relax(self) -> None:
        self.point("relax", None)

    # -- the scheduler proper -------------------------------------------------
    def point(self, kind: str, obj: object) -> None:
        cur = self.current
        if cur is None:
            # Outside any task (set-up code, oracles) nothing can interleave.
            return
        self.steps += 1
        if self.steps > self.max_steps:
            self._abort_run(StepBudgetExceeded(self.max_steps))
        if self.steps >= self._next_deadline:
            self._fire_timers()
        if self.on_step is not None:
            self.on_step(cur, kind, obj)
        runnable = self.runnable
        if len(runnable) > 1:
            nxt = self.strategy.pick(runnable, cur)
            self.schedule.append(nxt.tid)
            if nxt is not cur:
                self._switch_to(nxt)

    def _switch_to(self, task: Task) -> None:
        self.current = task
        assert task.glet is not None
        task.glet.switch()

    def _choose(self) -> Task:
        runnable = self.runnable
        if len(runnable) == 1:
            return runnable[0]
        task = self.strategy.pick(runnable, None)
        self.schedule.append(task.tid)
        return task

    def block(self, waiters: list[Task], why: str, timeout_steps: int | None = None) -> bool:
        """Take the current task off the run queue until `wake_all(waiters)`,
        or until `timeout_steps` steps of virtual time pass.  False on timeout."""
        cur = self.current
        if cur is None:
            raise RuntimeError(f"would block outside a task, on {why}")
        cur.waiting_on = why
        waiters.append(cur)
        self.runnable.remove(cur)
        if timeout_steps is not None:
            self._add_timer(cur, waiters, self.now + max(1, timeout_steps))
        if not self.runnable:
            self._advance_clock()
        if self.runnable:
            nxt = self._choose()
            if nxt is cur:  # our own deadline came first: we never really slept
                self.current = cur
            else:
                self._switch_to(nxt)
        else:
            # Nobody can run, nor ever will: the hub reports the deadlock.
            self.current = None
            assert self._hub is not None
            self._hub.switch()
        cur.waiting_on = None
        if cur.tid in self._timed_out:
            self._timed_out.discard(cur.tid)
            return False
        return True

    @property
    def now(self) -> int:
        """Virtual time in microseconds: a step is one, and idle time is skipped over."""
        return self.steps + self._skipped

    def _add_timer(self, task: Task, waiters: list[Task], deadline: int) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (deadline, self._timer_seq, task, waiters))
        self._next_deadline = self._timers[0][0] - self._skipped

    def _fire_timers(self) -> None:
        """Wake every task whose deadline has come and that is still waiting."""
        timers = self._timers
        now = self.now
        while timers and timers[0][0] <= now:
            _, _, task, waiters = heapq.heappop(timers)
            for i, t in enumerate(waiters):
                if t is task:
                    del waiters[i]
                    self._timed_out.add(task.tid)
                    bisect.insort(self.runnable, task)
                    break
        self._next_deadline = timers[0][0] - self._skipped if timers else sys.maxsize

    def _advance_clock(self) -> bool:
        """Everyone is asleep: jump to the next deadline that still wakes
        somebody.  False if no timer is left (then it is a deadlock)."""
        while self._timers and not self.runnable:
            self._skipped = max(self._skipped, self._timers[0][0] - self.steps)
            self._fire_timers()
        return bool(self.runnable)

    def wake_all(self, waiters: list[Task]) -> None:
        for task in waiters:
            bisect.insort(self.runnable, task)
        waiters.clear()

    def abort(self, exc: BaseException) -> None:
        """Stop the run at once and make run() raise `exc`: how an oracle that
        sees a violation mid-step ends the schedule without unwinding through
        kernel code.  Outside a task it simply raises `exc`."""
        if self.current is None or self._hub is None:
            raise exc
        self._abort_run(exc)

    def _abort_run(self, exc: BaseException) -> None:
        self._abort = exc
        self.current = None
        assert self._hub is not None
        self._hub.switch()

    # -- tasks ----------------------------------------------------------------
    def _body(self, task: Task) -> None:
        try:
            task.result = task.fn(*task.args)
        except greenlet.GreenletExit:
            raise
        except BaseException as exc:
            task.exc = exc
            self._failures.append(task)
        task.done = True
        self.runnable.remove(task)
        self.current = None
        # Returning hands control to the hub, the greenlet's parent.

    def _start(self, task: Task) -> None:
        task.glet = greenlet.greenlet(run=lambda: self._body(task), parent=self._hub)
        self.runnable.append(task)  # the newest task has the largest id

    def run(self) -> None:
        if self._hub is not None:
            raise RuntimeError("SimExecutor.run() is not reentrant")
        self._hub = greenlet.getcurrent()
        self._abort = None
        try:
            for task in self.runnable:
                assert task.glet is not None
                task.glet.parent = self._hub
            while self._abort is None and (self.runnable or self._advance_clock()):
                self._switch_to(self._choose())
                self.current = None
        finally:
            self._teardown()
        if self._abort is not None:
            raise self._abort
        if self._failures:
            first = self._failures[0]
            self._failures.clear()
            assert first.exc is not None
            raise first.exc
        blocked = [t for t in self.tasks if not t.done]
        if blocked:
            raise Deadlock([(t.name, t.waiting_on or "?") for t in blocked])

    def _teardown(self) -> None:
        """Unwind every greenlet left mid-run, with scheduling turned off, so
        no stack outlives the run and nothing is collected at a random time."""
        self.current = None
        for task in self.tasks:
            glet = task.glet
            if glet is not None and glet and not glet.dead:
                # An unwinding task may fail again (say, re-blocking); it is gone anyway.
                with contextlib.suppress(BaseException):
                    glet.throw(greenlet.GreenletExit)
        self.runnable = [t for t in self.runnable if not t.done]
        self._hub = None
