"""Greenlets for the SimExecutor's tasks, each reused once its task is over.

Starting a fresh greenlet costs CPython a new frame stack for it (an mmap,
and a munmap when the greenlet dies): about as much as a short schedule's
scheduling points together.  A pool's greenlet runs a task's body and then
waits, idle, for the next body it is given, in this run or a later one; an
exploration's explorer keeps one pool for all its schedules
(check/strategies/base.py), and an executor with none makes its own.

Rules: a pool serves the thread that made it (a greenlet cannot change
threads); elsewhere it hands out greenlets of no pool.  `get(fn, arg)`
hands out a greenlet whose first switch, wherever it comes from, runs
fn(arg).  A body ends by returning (or by GreenletExit, thrown in to unwind
it); the greenlet then goes back to the pool and switches to its parent,
just as a greenlet that died would.  An idle greenlet holds nothing of the
run it served, and nothing holds it but the pool, so a pool that is dropped
frees them all.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable
from typing import Any

import greenlet

Job = tuple[Callable[[Any], None], Any]


class _Worker(greenlet.greenlet):
    """A pool's greenlet: its next body, and its pool (a weak reference)."""

    job: Job | None
    pool: weakref.ref[TaskPool]


class TaskPool:
    """Idle greenlets, ready for a task's body (see the module docstring)."""

    def __init__(self) -> None:
        self._idle: list[_Worker] = []
        self._thread = threading.get_ident()

    def get(self, fn: Callable[[Any], None], arg: Any) -> greenlet.greenlet:
        """A greenlet whose first switch runs fn(arg)."""
        if threading.get_ident() != self._thread:
            return greenlet.greenlet(lambda: fn(arg))
        idle = self._idle
        while idle:
            glet = idle.pop()
            if not glet.dead:
                glet.job = (fn, arg)
                return glet
        glet = _Worker(_serve)
        glet.pool = weakref.ref(self)
        glet.job = (fn, arg)
        return glet


def _serve() -> None:
    """A pool's greenlet: body after body, idle in between."""
    while True:
        me = greenlet.getcurrent()
        assert isinstance(me, _Worker) and me.job is not None
        fn, arg = me.job
        me.job = None
        del me
        # GreenletExit: unwound mid-body (SimExecutor._teardown); free again.
        with contextlib.suppress(greenlet.GreenletExit):
            fn(arg)
        del fn, arg  # nothing of the run outlives it here
        me = greenlet.getcurrent()
        assert isinstance(me, _Worker)
        pool = me.pool()
        if pool is None:
            return  # the pool is gone: die, as a greenlet of no pool does
        pool._idle.append(me)
        back = me.parent
        del me, pool
        assert back is not None
        back.switch()


__all__ = ["TaskPool"]
