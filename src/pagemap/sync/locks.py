"""Spinlocks and sleeping semaphores, in the two flavours the executors need.

A SpinLock is the kernel's spinlock: short critical sections, never held
across a sleep.  A Semaphore is Akaros's sleeping semaphore (`sem_down`,
`sem_up`); `lock_page` is built on one.

Under the SimExecutor a task that would spin or sleep is taken off the run
queue until the lock is released or the semaphore is upped, so "every task
blocked" is a deadlock the scheduler can see and report.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pagemap.sync.executor import SimExecutor, Task

# Virtual time under the SimExecutor: one scheduling step is one microsecond.
SIM_STEPS_PER_SECOND = 1_000_000


class SpinLock:
    """Interface shared by both flavours."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def acquire(self) -> None:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    @property
    def held(self) -> bool:
        raise NotImplementedError

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}, held={self.held})"


class Semaphore:
    """Interface shared by both flavours."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def down(self) -> None:
        raise NotImplementedError

    def up(self) -> None:
        raise NotImplementedError

    def down_timeout(self, seconds: float) -> bool:
        """down(), giving up after `seconds`; False if it gave up.  Under the
        SimExecutor the seconds are virtual: one scheduling step is 1 us."""
        raise NotImplementedError

    def reset(self, count: int) -> None:
        """Set the count without a scheduling point; only for an object no
        other task can see yet (the seed's `pg_sem.nr_signals = 0`)."""
        raise NotImplementedError

    @property
    def count(self) -> int:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}, count={self.count})"


class ThreadSpinLock(SpinLock):
    # acquire/release are the OS lock's own methods, bound per instance: the
    # page-cache hit path takes the map lock on every lookup, and a wrapper
    # call would be a third of that lock's cost.
    __slots__ = ("_lock", "acquire", "release")

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._lock = threading.Lock()
        self.acquire = self._lock.acquire  # type: ignore[method-assign,assignment]
        self.release = self._lock.release  # type: ignore[method-assign]

    @property
    def held(self) -> bool:
        return self._lock.locked()


class ThreadSemaphore(Semaphore):
    __slots__ = ("_cond", "_count")

    def __init__(self, count: int, name: str) -> None:
        super().__init__(name)
        self._count = count
        self._cond = threading.Condition(threading.Lock())

    def down(self) -> None:
        with self._cond:
            while self._count == 0:
                self._cond.wait()
            self._count -= 1

    def up(self) -> None:
        with self._cond:
            self._count += 1
            self._cond.notify()

    def down_timeout(self, seconds: float) -> bool:
        with self._cond:
            if not self._cond.wait_for(lambda: self._count > 0, timeout=seconds):
                return False
            self._count -= 1
            return True

    def reset(self, count: int) -> None:
        self._count = count

    @property
    def count(self) -> int:
        return self._count


class SimSpinLock(SpinLock):
    __slots__ = ("_sched", "holder", "waiters")

    def __init__(self, name: str, sched: SimExecutor) -> None:
        super().__init__(name)
        self._sched = sched
        self.holder: Task | None = None
        self.waiters: list[Task] = []

    def acquire(self) -> None:
        sched = self._sched
        sched.point("lock", self)
        while self.holder is not None:
            sched.block(self.waiters, f"spinlock {self.name} (held by {self.holder.name})")
        self.holder = sched.current or sched.outside

    def release(self) -> None:
        sched = self._sched
        sched.point("unlock", self)
        self.holder = None
        if self.waiters:
            sched.wake_all(self.waiters)

    @property
    def held(self) -> bool:
        return self.holder is not None


class SimSemaphore(Semaphore):
    __slots__ = ("_count", "_sched", "waiters")

    def __init__(self, count: int, name: str, sched: SimExecutor) -> None:
        super().__init__(name)
        self._count = count
        self._sched = sched
        self.waiters: list[Task] = []

    def down(self) -> None:
        sched = self._sched
        sched.point("down", self)
        while self._count == 0:
            sched.block(self.waiters, f"semaphore {self.name}")
        self._count -= 1

    def up(self) -> None:
        sched = self._sched
        sched.point("up", self)
        self._count += 1
        if self.waiters:
            sched.wake_all(self.waiters)

    def down_timeout(self, seconds: float) -> bool:
        sched = self._sched
        sched.point("down", self)
        steps = int(seconds * SIM_STEPS_PER_SECOND)
        while self._count == 0:
            if not sched.block(self.waiters, f"semaphore {self.name} (timed)", steps):
                return False
        self._count -= 1
        return True

    def reset(self, count: int) -> None:
        self._count = count

    @property
    def count(self) -> int:
        return self._count
