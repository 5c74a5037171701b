"""The SimExecutor: one greenlet at a time, switched at scheduling points.

Rules:

- A task runs until its next scheduling point (sync/core.py); there a
  `Strategy` picks which runnable task goes next.  Plain Python between two
  points is one indivisible step.  When the strategy keeps the same task
  running, nothing switches at all.
- A task is *runnable* when its next operation can go now.  An ACQUIRE whose
  object is unavailable (a held lock, a zero semaphore) parks the task on the
  object's `waiters` before any choice is offered; taking an object parks the
  other tasks about to take it (`took`); releasing it unparks them.  So the
  strategy is never offered a step that would block, and when nobody is
  runnable (and no timer is pending) the run ends in a `Deadlock` naming what
  each task waits for.
- At a `relax` point (a spin-retry loop) the task must let another runnable
  task go first; spinning twice in a row with nothing else run in between
  would see the same state and change nothing.
- Nothing reads the clock or an unseeded random source (the watchdog, which
  only ends a run that is stuck for good, excepted), so the same strategy
  and seed give the same schedule, bit for bit.
- Virtual time.  Timed waits (`timed_point`) sleep until woken or until a
  deadline in virtual microseconds.  With `clock="steps"` a step is one
  microsecond and deadlines fire as steps pass (what `pagemap run` wants: a
  periodic flusher).  With `clock="idle"` time moves only when no task can
  run, and then jumps to the next deadline; which step a timeout follows no
  longer depends on how many steps happened to run, which the checker's
  partial-order reduction requires.
- `log`, when set, records every step as it happens (task, kind, footprint,
  and the tasks that could have gone instead): the raw material of the
  checker's path record.  Recording costs nothing when `log` is None.

Where each part lives: the log in sync/eventlog.py, virtual time and timers
in sync/vclock.py (mixed into SimExecutor); the scheduler here.
"""

from __future__ import annotations

import contextlib
import random
import sys
from collections.abc import Callable, Sequence
from types import FrameType

import greenlet

from pagemap.sync.arrays import AtomicArray, LockTable, SimAtomicArray, SimLockTable
from pagemap.sync.atomic import AtomicWord, SimAtomicWord
from pagemap.sync.core import (
    ACQUIRE,
    READ,
    RELAX,
    START,
    YIELD,
    Blocking,
    Deadlock,
    Strategy,
    Task,
)
from pagemap.sync.eventlog import EventLog as EventLog
from pagemap.sync.eventlog import Site as Site
from pagemap.sync.executor import Executor
from pagemap.sync.locks import Semaphore, SimSemaphore, SimSpinLock, SpinLock
from pagemap.sync.parking import Parking
from pagemap.sync.vclock import CLOCKS as CLOCKS
from pagemap.sync.vclock import VirtualClock
from pagemap.sync.watchdog import Watchdog, WatchdogInterrupt

StepHook = Callable[[Task], None]


class SeededRandom(Strategy):
    """The SimExecutor's own default: uniform among the runnable tasks, from a
    seeded generator (the checker brings strategies of its own, check/)."""

    def __init__(self, seed: int | None = 0) -> None:
        self.rng = random.Random(seed)

    def pick(self, runnable: Sequence[Task], current: Task | None, kind: str) -> Task:
        return runnable[self.rng.randrange(len(runnable))]


class SimExecutor(VirtualClock, Parking, Executor):
    """The deterministic scheduler (see the module docstring)."""

    name = "sim"

    def __init__(
        self,
        strategy: Strategy | None = None,
        max_steps: int | None = None,
        clock: str = "steps",
        watchdog: float | Watchdog | None = None,
    ) -> None:
        super().__init__()
        if clock not in CLOCKS:
            raise ValueError(f"unknown clock {clock!r}: choose one of {', '.join(CLOCKS)}")
        if isinstance(watchdog, int | float) and not watchdog > 0:
            raise ValueError(f"the watchdog needs a positive number of seconds, not {watchdog}")
        self.strategy = strategy or SeededRandom(0)
        self.every_step = self.strategy.every_step
        self._max_steps = max_steps if max_steps is not None else sys.maxsize
        self.clock = clock
        self.watchdog = watchdog
        self.steps = 0
        self.runnable: list[Task] = []
        self._runmask = 0  # `runnable` as a bit mask of task ids
        self.current: Task | None = None
        self.outside = Task(-1, "outside", 0, lambda: None, ())
        self._on_step: StepHook | None = None
        self._hooked = False  # _on_step is set, or the prologue runs
        self.on_event: Callable[[int], None] | None = None  # called as each step is logged
        # Called once the run has stopped, before unfinished tasks are unwound (their
        # unwinding releases locks): the state a replay shows after the last step.
        self.on_end: Callable[[], None] | None = None
        self.log: EventLog | None = None
        self.recording = False
        self._mask = 0  # the choice the running task's step was (for the log)
        self._hub: greenlet.greenlet | None = None
        self._abort: BaseException | None = None
        self._pending_abort: BaseException | None = None
        self._prologue = False
        self._failures: list[Task] = []
        # Timed waits: a heap of (deadline in virtual us, timer seq, task, queue).
        # Virtual time is `now` = steps + skipped; jumps do not count against
        # the step budget.  _next_deadline is in steps, for point()'s one
        # compare (with the budget's end, as `_limit`).
        self._timers: list[tuple[int, int, Task, list[Task]]] = []
        self._timer_seq = 0
        self._skipped = 0
        self._next_deadline = sys.maxsize
        self._set_limit()
        # Arrays and lock tables by name: footprints name their words and
        # locks as (name, i); the tables answer for their locks' availability.
        self.keyed: dict[str, object] = {}

    def record(self, log: EventLog | None) -> None:
        """Record every step of the next run into `log` (None: stop recording)."""
        self.log = log
        self.recording = log is not None

    # -- primitives -----------------------------------------------------------
    def atomic(self, value: int, name: str) -> AtomicWord:
        word = SimAtomicWord(value, name, self)
        if self.recording:
            self.register(word)
        return word

    def spinlock(self, name: str) -> SpinLock:
        lock = SimSpinLock(name, self)
        if self.recording:
            self.register(lock)
        return lock

    def semaphore(self, count: int, name: str) -> Semaphore:
        sem = SimSemaphore(count, name, self)
        if self.recording:
            self.register(sem)
        return sem

    def atomic_array(self, n: int, name: str) -> AtomicArray:
        arr = SimAtomicArray(n, name, self)
        self.register_keyed(name, arr)
        return arr

    def lock_table(self, n: int, name: str) -> LockTable:
        return SimLockTable(n, name, self)

    def register_keyed(self, name: str, table: object) -> None:
        """`table` answers for footprints `(name, i)`; a name is taken once."""
        if name in self.keyed:
            raise ValueError(f"two arrays or lock tables are both named {name!r}")
        self.keyed[name] = table

    def register(self, obj: object) -> None:
        log = self.log
        if log is not None:
            log.made += 1
            obj.sid = -log.made  # type: ignore[attr-defined]
            if log.objects is not None:
                log.objects.append(obj)

    def current_task(self) -> Task | None:
        return self.current

    def relax(self) -> None:
        self.point(RELAX, None, YIELD)

    def touch(self, obj: object, access: int) -> None:
        if self.recording and self.current is not None:
            log = self.log
            assert log is not None
            log.extra.setdefault(len(log.tids) - 1, []).append((obj, access))

    def read_only(self) -> None:
        """The step just recorded left its object unchanged: log it as a read."""
        log = self.log
        if log is not None and self.current is not None and log.accs:
            log.accs[-1] = READ

    # -- the scheduler proper -------------------------------------------------
    # point() is the one call a step makes; a spinlock's acquire is one call
    # too (spin_acquire: its point, its take and `took` in one frame).  What
    # is rare is behind one test each: `_limit` (the step budget or a timer
    # due, `_tick`) and `_hooked` (an on_step hook, or the prologue).
    def point(self, kind: str, obj: object, access: int) -> None:
        cur = self.current
        if cur is None:
            return  # outside any task (set-up code, oracles): nothing can interleave
        steps = self.steps + 1
        self.steps = steps
        if steps >= self._limit:
            self._tick(steps)
        cur.kind = kind
        cur.obj = obj
        cur.access = access
        if self._hooked and self._hooks(cur, obj, access):
            pass  # the prologue: nothing decided
        elif access == ACQUIRE and (
            self.keyed[obj[0]].sim_blocked_at(obj[1])  # type: ignore[attr-defined]
            if type(obj) is tuple
            else obj.sim_blocked()  # type: ignore[attr-defined]
        ):
            self._park(cur, *self._waiters(obj))
        else:
            runnable = self.runnable
            if len(runnable) > 1 or self.every_step:
                mask = self._runmask
                if kind is RELAX and len(runnable) > 1:
                    runnable = [t for t in runnable if t is not cur]
                    mask &= ~(1 << cur.tid)
                if self.recording:
                    self._mask = mask
                if len(runnable) > 1 or self.every_step:
                    nxt = self.strategy.pick(runnable, cur, kind)
                else:
                    nxt = runnable[0]
                if nxt is not cur:
                    self.current = nxt
                    nxt.glet.switch()  # type: ignore[union-attr]
        if self.recording:
            log = self.log
            assert log is not None
            log.tids.append(cur.tid)
            log.kinds.append(kind)
            log.objs.append(obj)
            log.accs.append(access)
            log.enabled.append(self._mask or 1 << cur.tid)
            self._mask = 0
            if log.sites is not None or self.on_event is not None:
                self._logged(log, sys._getframe())

    def spin_acquire(self, lock: SimSpinLock) -> None:
        """A spinlock's acquire, what point("lock", lock, ACQUIRE), taking the
        lock and took(lock) do, in that order, in one call (the hot path of
        every model): a spinlock is unavailable once taken, so the other
        tasks about to take it wait."""
        cur = self.current
        if cur is None:
            lock.take_outside(self.outside)
            return
        steps = self.steps + 1
        self.steps = steps
        if steps >= self._limit:
            self._tick(steps)
        cur.kind = "lock"
        cur.obj = lock
        cur.access = ACQUIRE
        if self._hooked and self._hooks(cur, lock, ACQUIRE):
            pass
        elif lock.holder is not None:
            self._park(cur, lock.waiters, lock.sim_wait())
        else:
            runnable = self.runnable
            if len(runnable) > 1 or self.every_step:
                if self.recording:
                    self._mask = self._runmask
                nxt = self.strategy.pick(runnable, cur, "lock")
                if nxt is not cur:
                    self.current = nxt
                    nxt.glet.switch()  # type: ignore[union-attr]
        if self.recording:
            log = self.log
            assert log is not None
            log.tids.append(cur.tid)
            log.kinds.append("lock")
            log.objs.append(lock)
            log.accs.append(ACQUIRE)
            log.enabled.append(self._mask or 1 << cur.tid)
            self._mask = 0
            if log.sites is not None or self.on_event is not None:
                self._logged(log, sys._getframe())
        lock.holder = cur
        runnable = self.runnable
        if len(runnable) > 1:
            for t in runnable:
                if t.obj is lock and t is not cur and t.access == ACQUIRE:
                    self._park_takers(lock)
                    break

    def _hooks(self, cur: Task, obj: object, access: int) -> bool:
        """The on_step hook, and the prologue's stop (True: the step is not
        the strategy's to decide)."""
        if self._on_step is not None:
            self._on_step(cur)
        if self._prologue:
            self._stop_at_first_point(cur, obj, access)
            return True
        return False

    @property
    def on_step(self) -> StepHook | None:
        """Called at every step of a task, before the step is decided."""
        return self._on_step

    @on_step.setter
    def on_step(self, hook: StepHook | None) -> None:
        self._on_step = hook
        self._hooked = hook is not None or self._prologue

    def _stop_at_first_point(self, cur: Task, obj: object, access: int) -> None:
        """The prologue: a task that has just started stops at its first point
        with nothing decided, and waits there (parked, if its first step would
        block) until the first real choice.  What a task does before its first
        point touches nothing shared, so running it early changes nothing, and
        "which task starts first" is no choice at all."""
        if access == ACQUIRE and self._blocked(obj):
            self._wait_on(cur, *self._waiters(obj))
        self.current = None
        assert self._hub is not None
        self._hub.switch()
        cur.waiting_on = None

    def timed_point(self, kind: str, obj: Blocking, steps: int) -> bool:
        """An ACQUIRE point that gives up after `steps` of virtual time: True
        when the operation may go on, False when it timed out (then the step
        is logged as a read: it saw the object unavailable and took nothing)."""
        cur = self.current
        assert cur is not None
        cur.timeout = steps
        cur.deadline = -1
        try:
            self.point(kind, obj, ACQUIRE)
        finally:
            cur.timeout = None
        if cur.timed_out:
            cur.timed_out = False
            if self.recording:
                self.read_only()
            return False
        return True

    def _log(self, cur: Task) -> None:
        """Log the step `cur` just took (point() does it in place)."""
        log = self.log
        assert log is not None
        log.tids.append(cur.tid)
        log.kinds.append(cur.kind)
        log.objs.append(cur.obj)
        log.accs.append(cur.access)
        log.enabled.append(self._mask or 1 << cur.tid)
        self._mask = 0
        if log.sites is not None or self.on_event is not None:
            self._logged(log, sys._getframe(1))

    def _logged(self, log: EventLog, frame: FrameType) -> None:
        """The step just logged, with its point taken in `frame`: its site, if
        the log keeps them, and the on_event hook."""
        if log.sites is not None:
            assert log._site is not None
            log.sites.append(log._site(frame))
        if self.on_event is not None:
            self.on_event(len(log.tids) - 1)

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
        if self.recording and not self._prologue:
            task.kind, task.obj, task.access = START, None, 0
            self._log(task)
        try:
            task.result = task.fn(*task.args)
        except greenlet.GreenletExit:
            raise
        except WatchdogInterrupt:
            self._abort = self._pending_abort
            self.current = None
            return
        except (KeyboardInterrupt, SystemExit) as exc:
            # Never a task's failure: the user (or the system) wants out.
            self._abort = exc
            self.current = None
            return
        except BaseException as exc:
            task.exc = exc
            self._failures.append(task)
        task.done = True
        self.runnable.remove(task)
        self._runmask &= ~(1 << task.tid)
        self.current = None
        # Returning hands control to the hub, the greenlet's parent.

    def _start(self, task: Task) -> None:
        pool = self.strategy.pool
        if pool is not None:
            task.glet = pool.get(self._body, task)
            if self._hub is not None:
                task.glet.parent = self._hub
        else:
            task.glet = greenlet.greenlet(run=lambda: self._body(task), parent=self._hub)
        self.runnable.append(task)  # the newest task has the largest id
        self._runmask |= 1 << task.tid

    def run(self) -> None:
        if self._hub is not None:
            raise RuntimeError("SimExecutor.run() is not reentrant")
        self._hub = greenlet.getcurrent()
        self._abort = None
        dog = self.watchdog
        own = isinstance(dog, int | float)
        if own:
            dog = Watchdog(float(dog))  # type: ignore[arg-type]
        if dog is not None:
            dog.watch(self)  # type: ignore[union-attr]
        try:
            for task in self.runnable:
                assert task.glet is not None
                task.glet.parent = self._hub
            self._prologue = self._hooked = True
            for task in list(self.runnable):
                if self._abort is not None:
                    break
                self._switch_to(task)
                self.current = None
            self._prologue = False
            self._hooked = self._on_step is not None
            while self._abort is None and (self.runnable or self._advance_clock()):
                self._switch_to(self._choose())
                self.current = None
        except WatchdogInterrupt:
            self._abort = self._pending_abort
        finally:
            if self.on_end is not None:
                self.on_end()
            if dog is not None:
                dog.unwatch(self)  # type: ignore[union-attr]
                if own:
                    dog.close()  # type: ignore[union-attr]
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
            # A finished task's greenlet may be back in a pool (sync/pool.py), idle.
            if glet is not None and glet and not glet.dead and not task.done:
                # An unwinding task may fail again (say, re-blocking); it is gone anyway.
                with contextlib.suppress(BaseException):
                    glet.throw(greenlet.GreenletExit)
        self.runnable = [t for t in self.runnable if not t.done]
        self._runmask = sum(1 << t.tid for t in self.runnable)
        self._hub = None


__all__ = ["CLOCKS", "EventLog", "SeededRandom", "SimExecutor", "Site", "StepHook"]
