"""The SimExecutor's virtual time: timed waits' deadlines, the clock they
are read on, and the step budget.

Part of SimExecutor: sync/sim.py mixes this class in and sets its fields.
Rules: with clock="steps" a step is one microsecond and deadlines fire as
steps pass (point() compares the step count with `_limit` alone, the
nearer of `_next_deadline` and the end of the step budget); with
clock="idle" time moves only when no task can run, and then jumps to the
next deadline (`_advance_clock`).  Nothing here reads a real clock.  A timer
whose task was woken since (its `timer` no longer the timer's seq) fires
nothing.
"""

from __future__ import annotations

import bisect
import heapq
import sys
from typing import TYPE_CHECKING

from pagemap.sync.core import StepBudgetExceeded, Task

CLOCKS = ("steps", "idle")


class VirtualClock:
    """Virtual time, the timers of timed waits, and the step budget."""

    # Fields SimExecutor.__init__ sets.
    clock: str
    steps: int
    runnable: list[Task]
    _runmask: int
    _timers: list[tuple[int, int, Task, list[Task]]]
    _skipped: int
    _next_deadline: int
    _max_steps: int
    _limit: int
    _pending_abort: BaseException | None

    if TYPE_CHECKING:  # SimExecutor's

        def _abort_run(self, exc: BaseException) -> None: ...

    def _tick(self, steps: int) -> None:
        """The step budget is spent, or a timer is due."""
        if steps > self._max_steps:
            self._abort_run(self._pending_abort or StepBudgetExceeded(self._max_steps))
        if steps >= self._next_deadline:
            self._fire_timers()

    def _set_limit(self) -> None:
        """`_limit`: the first step count point() must look at more closely."""
        self._limit = min(self._max_steps + 1, self._next_deadline)
        if self._pending_abort is not None:
            # The watchdog's thread sets _pending_abort, then max_steps = -1
            # (so _limit = -1); if it did so after the line above read the
            # old max_steps, that line has just undone it.
            self._limit = -1

    @property
    def max_steps(self) -> int:
        return self._max_steps

    @max_steps.setter
    def max_steps(self, n: int) -> None:
        self._max_steps = n  # the watchdog sets -1: any later point aborts
        self._set_limit()

    @property
    def now(self) -> int:
        """Virtual time in microseconds: a step is one (clock="steps"), and idle
        time is skipped over."""
        return self._base() + self._skipped

    def _base(self) -> int:
        return self.steps if self.clock == "steps" else 0

    def _set_next_deadline(self) -> None:
        if self._timers and self.clock == "steps":
            self._next_deadline = self._timers[0][0] - self._skipped
        else:
            self._next_deadline = sys.maxsize
        self._set_limit()

    def _fire_timers(self) -> None:
        """Wake every task whose deadline has come and that still waits on it."""
        timers = self._timers
        now = self.now
        while timers and timers[0][0] <= now:
            _, seq, task, queue = heapq.heappop(timers)
            if task.timer != seq:
                continue  # woken since, or waiting under a newer timer
            for i, t in enumerate(queue):
                if t is task:
                    del queue[i]
                    task.timer = 0
                    task.timed_out = True
                    bisect.insort(self.runnable, task)
                    self._runmask |= 1 << task.tid
                    break
        self._set_next_deadline()

    def _advance_clock(self) -> bool:
        """Everyone is asleep: jump to the next deadline that still wakes
        somebody.  False if no timer is left (then it is a deadlock)."""
        while self._timers and not self.runnable:
            self._skipped = max(self._skipped, self._timers[0][0] - self._base())
            self._fire_timers()
        return bool(self.runnable)
