"""The watchdog: ends a run whose task loops without reaching a scheduling point.

A task that loops in plain Python never returns control to the SimExecutor,
and no strategy can interrupt it.  One watchdog thread serves a whole
exploration: each run `watch`es it while it goes; every second the thread
looks at the run's step count, and if no step was taken for `seconds`, it
records where the stuck code is and raises an exception in it (CPython
delivers it at the next bytecode, which a loop always reaches).  A task
blocked on a held threading.Lock that its frame names (a model's lock the
scheduler cannot see) is stuck for good: the watchdog fires after one look,
and releases the lock, since a thread blocked in acquire reaches no bytecode.  The run then
ends with TaskStuck (a liveness violation, with the task's Python stack).

It reads the wall clock, but it can only end a run that is stuck for good; it
never changes a schedule.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
import threading
import traceback
from types import FrameType, ModuleType
from typing import Any

from pagemap.sync.core import TaskStuck

_LOCK = type(threading.Lock())
BLOCKED_AFTER = 1.0  # seconds without a step before a look at what the task waits on


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
            _settle_async_exc()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> Watchdog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _loop(self) -> None:
        # Look every second (or sooner, for a shorter watchdog): a task blocked on
        # a threading.Lock is stuck for good, and says so after one look.
        tick = min(self.seconds, BLOCKED_AFTER)
        still = 0.0  # seconds without a step, as far as the looks tell
        while not self._stop.wait(tick):
            with self._lock:
                sched = self._sched
                if sched is None:
                    continue
                steps = sched.steps
                if steps != self._last:
                    self._last, still = steps, 0.0
                    continue
                still += tick
                if self.should_fire(still, sys._current_frames().get(self._target)):
                    self._fire(sched)

    def should_fire(self, still: float, frame: FrameType | None) -> bool:
        """After `still` seconds without a step, with the task at `frame`."""
        return still >= self.seconds or bool(held_locks(frame))

    def _fire(self, sched: Any) -> None:
        frame = sys._current_frames().get(self._target)
        stack = "".join(traceback.format_stack(frame)[-8:]) if frame is not None else "?"
        cur = sched.current
        name = cur.name if cur is not None else "set-up code"
        held = held_locks(frame)
        blocked_on = ", ".join(f"`{label}`" for label, _ in held)
        where = f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else "?"
        sched._pending_abort = TaskStuck(name, self.seconds, stack, blocked_on, where)
        sched.max_steps = -1  # any later point aborts at once
        self._sched = None
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(self._target), ctypes.py_object(WatchdogInterrupt)
        )
        # A thread blocked in a threading.Lock's acquire never reaches the next
        # bytecode, where the interrupt is delivered: release what it waits on.
        for _, lock in held:
            with contextlib.suppress(RuntimeError):  # released in the meantime
                lock.release()


class _Settled(Exception):
    """Delivered to the watched thread, and caught there, by _settle_async_exc."""


def _settle_async_exc() -> None:
    """Leave no asynchronous exception pending or signalled on this thread.

    An interrupt the watchdog raised just as the run ended must not escape
    later.  Clearing it with PyThreadState_SetAsyncExc(thread, NULL) is not
    enough on CPython 3.11: the eval breaker stays signalled for good, which
    costs nothing until a profile function is set, when the next call spins
    in the eval loop for ever (a replay with step attribution, check/
    stepcalls.py, in the process that had explored a stuck task hung so:
    tests/check/test_counterexample.py replays a watchdog-stopped run twice).  An
    exception delivered the ordinary way unsignals it: one of our own, which
    replaces any pending interrupt, raised at the loop's first backward jump
    and caught at once.  Call it on the watched thread only."""
    thread = ctypes.c_ulong(threading.get_ident())
    try:
        if ctypes.pythonapi.PyThreadState_SetAsyncExc(thread, ctypes.py_object(_Settled)) == 1:
            while True:
                pass
    except _Settled:
        pass


def held_locks(frame: FrameType | None) -> list[tuple[str, Any]]:
    """The held threading.Locks a stuck frame names (its locals, the globals
    its code names, and their attributes), as (name, lock): what a task
    blocked outside any scheduling point is probably waiting on
    (tests/check/test_blocking.py)."""
    out: list[tuple[str, Any]] = []
    if frame is None:
        return out
    code = frame.f_code
    names = set(code.co_names) | set(code.co_varnames)
    scope = {k: v for k, v in frame.f_globals.items() if k in names}
    scope.update(frame.f_locals)
    for name, value in scope.items():
        candidates: list[tuple[str, object]] = [(name, value)]
        attrs = getattr(value, "__dict__", None)
        if isinstance(attrs, dict) and not isinstance(value, type | ModuleType):
            candidates += [(f"{name}.{a}", v) for a, v in attrs.items()]
        for label, obj in candidates:
            if isinstance(obj, _LOCK) and obj.locked():
                out.append((label, obj))
    return out
