"""The SimExecutor's run queue and wait lists: parking and unparking tasks.

Part of SimExecutor: sync/sim.py mixes this class in and sets its fields.
Rules: `runnable` holds the tasks that can go now, in task-id order, and
`_runmask` is the same set as a bit mask of task ids (the log's enabled
sets); every change to one changes the other here, at once.  A task about
to take an object that is unavailable is on the object's wait list, never
runnable: `took` parks the other takers when a take leaves the object
unavailable, `unpark` puts a wait list back on the run queue.  A timed wait
also arms a timer (sync/vclock.py) that takes the task off its wait list
when the deadline passes.
"""

from __future__ import annotations

import bisect
import heapq
from typing import TYPE_CHECKING, Any

import greenlet

from pagemap.sync.core import ACQUIRE, Strategy, Task


class Parking:
    """Parking and unparking (see the module docstring)."""

    # Fields and calls SimExecutor provides.
    runnable: list[Task]
    _runmask: int
    current: Task | None
    keyed: dict[str, Any]
    strategy: Strategy
    every_step: bool
    recording: bool
    _mask: int
    _hub: greenlet.greenlet | None
    _timers: list[tuple[int, int, Task, list[Task]]]
    _timer_seq: int

    if TYPE_CHECKING:  # sync/vclock.py's, mixed in beside this class

        @property
        def now(self) -> int: ...

        def _set_next_deadline(self) -> None: ...

        def _advance_clock(self) -> bool: ...

    def _blocked(self, obj: object) -> bool:
        """Whether an ACQUIRE of `obj` (an object, or a lock table's key) must wait."""
        if type(obj) is tuple:
            return self.keyed[obj[0]].sim_blocked_at(obj[1])  # type: ignore[no-any-return]
        return obj.sim_blocked()  # type: ignore[attr-defined,no-any-return]

    def _waiters(self, obj: object) -> tuple[list[Task], str]:
        if type(obj) is tuple:
            table = self.keyed[obj[0]]
            return table.waiters_at(obj[1]), table.sim_wait_at(obj[1])
        return obj.waiters, obj.sim_wait()  # type: ignore[attr-defined]

    def _switch_to(self, task: Task) -> None:
        self.current = task
        assert task.glet is not None
        task.glet.switch()

    def _choose(self) -> Task:
        """The next task when the one that ran cannot go on (parked or done)."""
        runnable = self.runnable
        if self.recording:
            self._mask = self._runmask
        if len(runnable) == 1 and not self.every_step:
            return runnable[0]
        return self.strategy.pick(runnable, None, "")

    def _park(self, cur: Task, queue: list[Task], why: str) -> None:
        """Take `cur` off the run queue until unparked (or its timed wait runs
        out), and run someone else meanwhile."""
        self._wait_on(cur, queue, why)
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

    def _wait_on(self, task: Task, queue: list[Task], why: str) -> None:
        task.waiting_on = why
        queue.append(task)
        self.runnable.remove(task)
        self._runmask &= ~(1 << task.tid)
        if task.timeout is not None:
            if task.deadline < 0:
                task.deadline = self.now + task.timeout
            self._timer_seq += 1
            task.timer = self._timer_seq
            heapq.heappush(self._timers, (task.deadline, task.timer, task, queue))
            self._set_next_deadline()

    def park(self, queue: list[Task], why: str, timeout_steps: int | None = None) -> bool:
        cur = self.current
        if cur is None:
            raise RuntimeError(f"would block outside a task, on {why}")
        cur.timeout, cur.deadline = timeout_steps, -1
        try:
            self._park(cur, queue, why)
        finally:
            cur.timeout = None
        if cur.timed_out:
            cur.timed_out = False
            return False
        return True

    def unpark(self, queue: list[Task]) -> None:
        runnable = self.runnable
        for task in queue:
            task.timer = 0  # its timer, if any, no longer wakes it
            bisect.insort(runnable, task)
            self._runmask |= 1 << task.tid
        queue.clear()

    def took(self, obj: object) -> None:
        """`obj` was just taken: if it is now unavailable, every other runnable
        task about to take it waits.  The common case first: nobody is."""
        cur = self.current
        runnable = self.runnable
        keyed = type(obj) is tuple
        for t in runnable:
            if t is not cur and t.access == ACQUIRE and (t.obj == obj if keyed else t.obj is obj):
                break
        else:
            return
        if not self._blocked(obj):
            return
        self._park_takers(obj)

    def _park_takers(self, obj: object) -> None:
        """Every runnable task but the current one about to take `obj` (now
        unavailable) waits for it."""
        cur = self.current
        runnable = self.runnable
        keyed = type(obj) is tuple
        i = 0
        while i < len(runnable):
            t = runnable[i]
            if t is not cur and t.access == ACQUIRE and (t.obj == obj if keyed else t.obj is obj):
                self._wait_on(t, *self._waiters(obj))
            else:
                i += 1


__all__ = ["Parking"]
