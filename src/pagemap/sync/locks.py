"""Spinlocks and sleeping semaphores, in the two flavours the executors need.

A SpinLock is the kernel's spinlock: short critical sections, never held
across a sleep.  A Semaphore is Akaros's sleeping semaphore (`sem_down`,
`sem_up`); `lock_page` is built on one.

Under the SimExecutor an acquire (a lock, a semaphore's down) is a point of
access ACQUIRE: the task's operation is enabled only while the object is
available, so the scheduler never offers a task whose next step would block,
and "every task blocked" is a deadlock it can see and report.  Taking the
object parks every other task whose next step is to take it (`took`; a
spinlock's acquire is its point, its take and that in one executor call,
`spin_acquire`); releasing it unparks them.
"""

from __future__ import annotations

import threading
from types import TracebackType

from pagemap.sync.core import ACQUIRE, WRITE, SimScheduler, Task

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
    __slots__ = ("_sched", "holder", "sid", "waiters")

    def __init__(self, name: str, sched: SimScheduler) -> None:
        self.name = name  # SpinLock's own __init__, inlined: a model makes many
        self._sched = sched
        self.sid = 0
        self.holder: Task | None = None
        self.waiters: list[Task] = []

    def sim_blocked(self) -> bool:
        return self.holder is not None

    def sim_wait(self) -> str:
        holder = self.holder
        return f"spinlock {self.name} (held by {holder.name if holder else '?'})"

    # The hot path of every model: `with lock` calls acquire itself (no
    # __enter__ in between), which is one call to the executor (its point,
    # the take, and parking the other takers: SimExecutor.spin_acquire), and
    # __exit__ releases without calling release.
    def acquire(self) -> None:
        self._sched.spin_acquire(self)

    __enter__ = acquire

    def take_outside(self, outside: Task) -> None:
        """Taken by code outside any task, which cannot wait."""
        if self.holder is not None:
            raise RuntimeError(
                f"spinlock {self.name} is held by {self.holder.name}, and code outside "
                "any task cannot wait for it"
            )
        self.holder = outside

    def release(self) -> None:
        sched = self._sched
        sched.point("unlock", self, WRITE)
        self.holder = None
        if self.waiters:
            sched.unpark(self.waiters)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        sched = self._sched
        sched.point("unlock", self, WRITE)
        self.holder = None
        if self.waiters:
            sched.unpark(self.waiters)

    @property
    def held(self) -> bool:
        return self.holder is not None


class SimSemaphore(Semaphore):
    __slots__ = ("_count", "_sched", "sid", "waiters")

    def __init__(self, count: int, name: str, sched: SimScheduler) -> None:
        self.name = name  # Semaphore's own __init__, inlined (see SimSpinLock)
        self._count = count
        self._sched = sched
        self.sid = 0
        self.waiters: list[Task] = []

    def sim_blocked(self) -> bool:
        return self._count == 0

    def sim_wait(self) -> str:
        return f"semaphore {self.name}"

    def down(self) -> None:
        sched = self._sched
        if sched.current is None and self._count == 0:
            raise RuntimeError(
                f"semaphore {self.name} is 0, and code outside any task cannot wait for it"
            )
        sched.point("down", self, ACQUIRE)
        count = self._count - 1
        self._count = count
        if count == 0:
            sched.took(self)

    def up(self) -> None:
        sched = self._sched
        sched.point("up", self, WRITE)
        self._count += 1
        if self.waiters:
            sched.unpark(self.waiters)

    def down_timeout(self, seconds: float) -> bool:
        sched = self._sched
        if sched.current is None:
            if self._count == 0:
                return False
            self._count -= 1
            return True
        steps = max(1, int(seconds * SIM_STEPS_PER_SECOND))
        if not sched.timed_point("down", self, steps):
            return False
        self._count -= 1
        if self._count == 0:
            sched.took(self)
        return True

    def reset(self, count: int) -> None:
        self._count = count

    @property
    def count(self) -> int:
        return self._count
