"""The ThreadExecutor: tasks are OS threads, preemption is the OS's.

Atomics are made atomic with a per-word lock, spinlocks are OS locks and
semaphores OS conditions (sync/atomic.py, sync/locks.py).  Scheduling points
cost nothing here: the OS decides when threads switch.  Used by `pagemap run`
by default and by stress tests.
"""

from __future__ import annotations

import threading
import time
from threading import get_ident

from pagemap.sync.arrays import STRIPES, AtomicArray, LockTable, ThreadAtomicArray, ThreadLockTable
from pagemap.sync.atomic import AtomicWord, ThreadAtomicWord
from pagemap.sync.core import Task
from pagemap.sync.executor import Executor
from pagemap.sync.locks import Semaphore, SpinLock, ThreadSemaphore, ThreadSpinLock


class ThreadExecutor(Executor):
    """Tasks are OS threads; atomics are made atomic with a lock."""

    name = "threads"
    has_points = False

    def __init__(self) -> None:
        super().__init__()
        # The stripe locks every atomic array of this executor shares.
        self._stripes = [threading.Lock() for _ in range(STRIPES)]
        self._local = threading.local()
        self._cores: dict[int, int] = {}  # thread id -> the core its task runs on
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

    def atomic_array(self, n: int, name: str) -> AtomicArray:
        return ThreadAtomicArray(n, name, self._stripes)

    def lock_table(self, n: int, name: str) -> LockTable:
        return ThreadLockTable(n, name)

    def current_task(self) -> Task | None:
        task: Task | None = getattr(self._local, "task", None)
        return task

    def current_core(self) -> int:
        """The running task's core (0 outside any task): a dict keyed by the
        thread's id, cheaper than a threading.local on the load path."""
        return self._cores.get(get_ident(), 0)

    def relax(self) -> None:
        time.sleep(0)

    def _body(self, task: Task) -> None:
        self._local.task = task
        self._cores[get_ident()] = task.core
        try:
            task.result = task.fn(*task.args)
        except BaseException as exc:
            task.exc = exc
            with self._failures_lock:
                self._failures.append(task)
        finally:
            self._cores.pop(get_ident(), None)  # thread ids are reused
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
