"""The floor of sync/: tasks, scheduling points and their footprints, parking.

Everything above this file (atomics, locks, the two executors) is built from
four calls a `Scheduler` answers:

    point(kind, obj, access)   a scheduling point: the calling task is about to
                               perform one indivisible operation, named `kind`,
                               on the shared object `obj`; under the SimExecutor
                               another task may run first
    touch(obj, access)         the operation in progress also touches `obj`
                               (never a switch; a footprint only)
    park(queue, why, timeout)  the calling task sleeps on `queue`
    unpark(queue)              every task asleep on `queue` may run again

**Footprints.**  Every point says what it touches and how: the object (a slot
word, page flags, a page lock, a PTE, a core's TLB, a frame's bytes, the map
lock, a semaphore, a host file) and whether it reads or writes it.  A frame is
named by its number (an int); a key such as (disk, block) by a tuple;
everything else by the Python object itself, which must be made by the
executor or `register`ed with it, so that a recorded run can name it the same
way in every schedule (by the order in which objects were made).  Two steps of different tasks are
*dependent* when they touch a common object and at least one writes it; the
checker's partial-order reduction reads dependency from footprints alone, so a
point that touches shared state it does not name is a bug in the model.

Access kinds are bits, so "does it write?" is one `&`:

    READ      observes the object
    WRITE     changes it (a store, a CAS that succeeds, a lock release, an up)
    ACQUIRE   WRITE, and may have to wait: a lock acquire or a semaphore down;
              the object says when it is unavailable (`sim_blocked`)
    YIELD     no footprint: the task is spinning (`relax`) and asks to let
              others go first

Plain Python between two points runs as one indivisible step.  Data that only
one task can see, or that a lock guards, needs no point of its own: the lock's
points order every access to it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import greenlet

from pagemap.sync.pool import TaskPool

READ = 1
WRITE = 2
ACQUIRE = 6  # WRITE | 4
YIELD = 8

# Kinds of point the schedulers treat specially.
RELAX = "relax"
START = "start"


def access_name(access: int) -> str:
    if access == ACQUIRE:
        return "acquire"
    if access & WRITE:
        return "write"
    if access & READ:
        return "read"
    return "none"


class Deadlock(Exception):
    """Every unfinished task is blocked; the message names what each waits on."""

    def __init__(self, waits: Sequence[tuple[str, str]]) -> None:
        self.waits = list(waits)
        lines = "; ".join(f"{name} waits on {what}" for name, what in self.waits)
        super().__init__(f"deadlock: every task is blocked: {lines}")


class StepBudgetExceeded(Exception):
    """The run took more scheduling points than its budget allows."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        super().__init__(f"step budget of {budget} scheduling points exceeded (livelock?)")


class TaskStuck(BaseException):
    """A task ran for too long without reaching a scheduling point: an infinite
    loop in plain Python, which no strategy could interrupt.  Raised inside the
    task by the SimExecutor's watchdog; `stack` is where it was."""

    def __init__(
        self, task: str, seconds: float, stack: str, blocked_on: str = "", where: str = ""
    ) -> None:
        self.task = task
        self.seconds = seconds
        self.stack = stack
        self.blocked_on = blocked_on  # the held threading.Locks it names, if any
        self.where = where  # file:line of the stuck frame
        if blocked_on:
            super().__init__(
                f"{where} {task} waits on {blocked_on}, a threading.Lock: pagemap's "
                "scheduler cannot see it, and a task waiting on it stops every task for good; "
                "use machine.executor.spinlock(name) (pagemap's locks are scheduling points)"
            )
            return
        super().__init__(
            f"{task} ran {seconds:g} s without reaching a scheduling point (a loop with "
            f"no atomic, lock or memory access in it?); it was at:\n{stack}"
        )


class Task:
    """One thread of kernel execution, pinned to a core.

    `kind`, `obj` and `access` describe the operation the task is about to
    perform: the point it stopped at (its pending footprint).
    """

    __slots__ = (
        "access",
        "args",
        "core",
        "deadline",
        "done",
        "exc",
        "fn",
        "glet",
        "kind",
        "name",
        "obj",
        "result",
        "tid",
        "timed_out",
        "timeout",
        "timer",
        "waiting_on",
    )

    def __init__(
        self, tid: int, name: str, core: int, fn: Callable[..., Any], args: tuple[Any, ...]
    ) -> None:
        self.tid = tid
        self.name = name
        self.core = core
        self.fn = fn
        self.args = args
        self.done = False
        self.result: Any = None
        self.exc: BaseException | None = None
        self.glet: greenlet.greenlet | None = None
        self.waiting_on: str | None = None
        # A timed wait (SimExecutor): how long the pending operation may wait,
        # its deadline once it waits, the timer armed for it, and whether it fired.
        self.timeout: int | None = None
        self.deadline = -1
        self.timer = 0
        self.timed_out = False
        self.kind = START
        self.obj: object = None
        self.access = 0

    def __lt__(self, other: Task) -> bool:
        return self.tid < other.tid

    def __repr__(self) -> str:
        return f"Task({self.tid}, {self.name!r}, core={self.core})"


class Blocking(Protocol):
    """An object a task may have to wait for (a lock, a semaphore)."""

    name: str
    waiters: list[Task]

    def sim_blocked(self) -> bool:
        """True while an ACQUIRE of this object cannot complete."""
        ...


class Scheduler:
    """What atomics and locks ask of the way tasks are run."""

    name = "abstract"

    def point(self, kind: str, obj: object, access: int) -> None:
        """A scheduling point before an operation on `obj` (see the module doc)."""

    def touch(self, obj: object, access: int) -> None:
        """The operation now in progress also touches `obj`."""

    def relax(self) -> None:
        """Called by a task spinning until others make progress; lets them run."""

    def register(self, obj: object) -> None:
        """`obj` will appear in footprints: give it a stable identity.  The
        executor's own primitives are registered as they are made; anything
        else a point names (a TLB, a host file) registers itself."""

    def current_task(self) -> Task | None:
        raise NotImplementedError

    def park(self, queue: list[Task], why: str, timeout_steps: int | None = None) -> bool:
        """Sleep on `queue` until `unpark(queue)`, or until `timeout_steps` of
        virtual time pass; False on timeout.  SimExecutor only: under threads
        the primitives sleep on OS objects of their own."""
        raise NotImplementedError

    def unpark(self, queue: list[Task]) -> None:
        raise NotImplementedError


class SimScheduler(Protocol):
    """What the SimExecutor's own primitives (sync/atomic.py, arrays.py,
    locks.py) ask of it, beyond a Scheduler's calls: the running task, the
    run queue an acquire looks through for other takers, and whether the run
    is being recorded (a write that changed nothing is then logged as a read)."""

    current: Task | None
    outside: Task  # the holder of a lock taken by code outside any task
    runnable: list[Task]
    recording: bool

    def point(self, kind: str, obj: object, access: int) -> None: ...

    def touch(self, obj: object, access: int) -> None: ...

    def read_only(self) -> None:
        """The step just logged left its object unchanged: log it as a read."""

    def took(self, obj: object) -> None:
        """`obj` was just taken: park the other tasks about to take it, if it
        is now unavailable."""

    def spin_acquire(self, lock: Any) -> None:
        """A spinlock's acquire: its point, the take, and `took`, in one call."""

    def unpark(self, queue: list[Task]) -> None: ...

    def timed_point(self, kind: str, obj: Blocking, steps: int) -> bool: ...

    def register_keyed(self, name: str, table: object) -> None: ...


class Strategy:
    """Chooses the next task wherever more than one may run (SimExecutor).

    `pick(runnable, current, kind)`: `runnable` holds the tasks that may go
    next, in task-id order: every task whose next operation can go now, less
    the current task at its `relax` point (it asked to let others go first);
    at least two of them, unless the strategy asked to see every step.
    `current` is the task at this point (None when it cannot go on: it is
    parked or done); `kind` is the kind of its point.
    """

    every_step = False  # True: pick is called even with one runnable task
    # Greenlets for the tasks of the runs this strategy drives, reused from
    # run to run (sync/pool.py); None: a fresh greenlet per task.
    pool: TaskPool | None = None

    def start(self, sched: Any) -> None:
        """Called once when a run begins."""

    def pick(self, runnable: Sequence[Task], current: Task | None, kind: str) -> Task:
        raise NotImplementedError


__all__ = [
    "ACQUIRE",
    "READ",
    "RELAX",
    "START",
    "WRITE",
    "YIELD",
    "Blocking",
    "Deadlock",
    "Scheduler",
    "SimScheduler",
    "StepBudgetExceeded",
    "Strategy",
    "Task",
    "TaskStuck",
    "access_name",
]
