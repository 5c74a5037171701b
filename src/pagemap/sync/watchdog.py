"""The watchdog: ends a run whose task loops without reaching a scheduling point.

A task that loops in plain Python never returns control to the SimExecutor,
and no strategy can interrupt it.  One watchdog thread serves a whole
exploration: each run `watch`es it while it goes; every `seconds` the thread
looks at the run's step count, and if no step was taken since it last looked,
it records where the stuck code is and raises an exception in it (CPython
delivers it at the next bytecode, which a loop always reaches).  The run then
ends with TaskStuck (a liveness violation, with the task's Python stack).

It reads the wall clock, but it can only end a run that is stuck for good; it
never changes a schedule.
"""

from __future__ import annotations

import ctypes
import sys
import threading
import traceback
from typing import Any

from pagemap.sync.core import TaskStuck


class WatchdogInterrupt(BaseException):
    """Raised asynchronously in a task that reached no point for too long."""


class Watchdog:
    def __init__(self, seconds: float) -> None:
        if not seconds > 0:
            raise ValueError(f"the watchdog needs a positive number of seconds, not {seconds}")
        self.seconds = seconds
        self._lock = threading.Lock()
        self._sched: Any = None
        self._target = 0
        self._last = -1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pagemap-watchdog", daemon=True)
        self._thread.start()

    def watch(self, sched: Any) -> None:
        """`sched` (a SimExecutor) runs now, on this thread."""
        with self._lock:
            self._sched = sched
            self._target = threading.get_ident()
            self._last = -1

    def unwatch(self, sched: Any) -> None:
        with self._lock:
            if self._sched is sched:
                self._sched = None
            fired = sched._pending_abort is not None
        if fired:
            # An interrupt raised just as the run ended must not escape later.
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._target), None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> Watchdog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.seconds):
            with self._lock:
                sched = self._sched
                if sched is None:
                    continue
                steps = sched.steps
                if steps != self._last:
                    self._last = steps
                    continue
                self._fire(sched)

    def _fire(self, sched: Any) -> None:
        frame = sys._current_frames().get(self._target)
        stack = "".join(traceback.format_stack(frame)[-8:]) if frame is not None else "?"
        cur = sched.current
        name = cur.name if cur is not None else "set-up code"
        sched._pending_abort = TaskStuck(name, self.seconds, stack)
        sched.max_steps = -1  # any later point aborts at once
        self._sched = None
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(self._target), ctypes.py_object(WatchdogInterrupt)
        )
