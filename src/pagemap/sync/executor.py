"""What the kernel may ask of the way it is executed: the Executor interface.

The kernel never asks which executor it runs on.  It gets its atomics, locks
and semaphores from an `Executor`, and calls `point()` at each hardware access
that can race (PTE, TLB and frame accesses; see sync/core.py for footprints).
The two executors live on the floor above this one:

- `ThreadExecutor` (sync/threads.py): a task is an OS thread; preemption is
  the OS's.
- `SimExecutor` (sync/sim.py): a task is a greenlet and exactly one runs at a
  time; at every scheduling point a strategy picks which runnable task goes
  next.  Same strategy and seed, same schedule, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pagemap.sync.arrays import AtomicArray, LockTable
from pagemap.sync.atomic import AtomicWord
from pagemap.sync.core import Deadlock, Scheduler, StepBudgetExceeded, Task
from pagemap.sync.locks import Semaphore, SpinLock


class Executor(Scheduler):
    """A Scheduler that also makes primitives and runs tasks."""

    def __init__(self) -> None:
        self.tasks: list[Task] = []

    # -- primitives -----------------------------------------------------------
    def atomic(self, value: int, name: str) -> AtomicWord:
        raise NotImplementedError

    def spinlock(self, name: str) -> SpinLock:
        raise NotImplementedError

    def semaphore(self, count: int, name: str) -> Semaphore:
        raise NotImplementedError

    def atomic_array(self, n: int, name: str) -> AtomicArray:
        """`n` atomic words named `(name, i)` in footprints (sync/arrays.py)."""
        raise NotImplementedError

    def lock_table(self, n: int, name: str) -> LockTable:
        """`n` sleeping locks, free to begin with (sync/arrays.py)."""
        raise NotImplementedError

    # Whether scheduling points do anything: False under OS threads, where
    # the hottest paths skip calling point() at all.
    has_points = True

    def current_core(self) -> int:
        """The core of the running task; outside any task, core 0."""
        task = self.current_task()
        return task.core if task is not None else 0

    # -- tasks ----------------------------------------------------------------
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


__all__ = ["Deadlock", "Executor", "StepBudgetExceeded", "Task"]
