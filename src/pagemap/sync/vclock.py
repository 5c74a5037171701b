"""The SimExecutor's virtual time: timed waits' deadlines, and the clock
they are read on.

Part of SimExecutor: sync/sim.py mixes this class in and sets its fields.
Rules: with clock="steps" a step is one microsecond and deadlines fire as
steps pass (point() compares the step count with `_next_deadline`); with
clock="idle" time moves only when no task can run, and then jumps to the
next deadline (`_advance_clock`).  Nothing here reads a real clock.  A timer
whose task was woken since (its `timer` no longer the timer's seq) fires
nothing.
"""

from __future__ import annotations

import bisect
import heapq
import sys

from pagemap.sync.core import Task

CLOCKS = ("steps", "idle")


class VirtualClock:
    """Virtual time and the timers of timed waits."""

    # Fields SimExecutor.__init__ sets.
    clock: str
    steps: int
    runnable: list[Task]
    _runmask: int
    _timers: list[tuple[int, int, Task, list[Task]]]
    _skipped: int
    _next_deadline: int

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
