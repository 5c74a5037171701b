"""Footprints checked, not trusted: what each step changed against what it declared.

DPOR reads dependency from footprints alone (sync/core.py): a step that changes
an object its footprint does not name looks independent of every step that
reads that object, and the reduction silently explores less.  Under validation
(`pagemap check --validate`, `PAGEMAP_VALIDATE=1`, or `run_schedule(...,
validate=True)`) a `FootprintValidator` takes the machine's state before and
after every step and fails the schedule with the step, its source line and the
object when a step changed something outside its footprint.

What it sees, by the keys footprints use:

- every word, spinlock, semaphore and TLB the executor made (by stable id): a
  word's value, whether a lock is held, a semaphore's count, a TLB's entries;
- every word of the per-frame arrays and every lock of the lock tables, as
  `(name, i)`;
- the bytes of every frame, by frame number.

A change to any of them must be named, with a write, by the step that made it
(its point or a `touch`).  What a lock guards in plain Python (a radix tree, a
VMR list) is ordered by that lock's own points and is not checked here.

Rules: the validator only reads the machine, at scheduling points, outside
any task's code; it needs the run's log with `keep_objects`.  A step runs from
the moment its point is logged until the same task's next point (or its end);
the state between two logged steps is the state the first one left.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from types import FrameType

from pagemap.check.decode import name_of
from pagemap.check.recorder import where
from pagemap.hw.memory import PGSIZE
from pagemap.hw.mmu import TLB
from pagemap.sync.arrays import AtomicArray, LockTable
from pagemap.sync.atomic import AtomicWord
from pagemap.sync.core import WRITE
from pagemap.sync.locks import Semaphore, SpinLock
from pagemap.sync.sim import EventLog, SimExecutor

# The oracle family of a footprint violation, as traces name it.
FOOTPRINT = "footprint"
# The environment variable that turns validation on for every run.
VALIDATE_ENV = "PAGEMAP_VALIDATE"
# The frames are compared a page at a time once their whole differs.
_FRAME = PGSIZE


@dataclass(frozen=True)
class Undeclared:
    """A step changed `obj` without naming it in its footprint."""

    step: int  # 1-based, as traces number steps; 0: before any step
    task: str
    kind: str
    location: str
    obj: str

    def __str__(self) -> str:
        at = f" at {self.location}" if self.location else ""
        if self.step == 0:
            return f"{self.obj} changed before any step (a task's code before its first point)"
        return (
            f"step {self.step} ({self.task}: {self.kind}{at}) changed {self.obj}, "
            "which its footprint does not name: DPOR would treat it as independent of "
            "every step that reads it"
        )


class FootprintValidator:
    """Compares each step's effect on the machine with its footprint."""

    def __init__(self, sched: SimExecutor, memory: memoryview) -> None:
        log = sched.log
        if log is None or log.objects is None:
            raise ValueError("footprint validation needs a recorded run with keep_objects")
        self.sched = sched
        self.memory = memory
        self.log: EventLog = log
        self.problems: list[Undeclared] = []
        self._state: dict[object, object] = {}
        self._memory = b""
        self._where: list[str] = []  # source line of each logged step

    def start(self) -> None:
        """The state once the model is built, before any task runs."""
        self._state, self._memory = self._snapshot()

    def event(self, i: int) -> None:
        """Step i is being logged: everything since the last snapshot was step i-1's."""
        frame: FrameType | None = sys._getframe(1)
        while frame is not None and "/pagemap/check/" in frame.f_code.co_filename:
            frame = frame.f_back  # the runner's hook, to the step's own point
        self._where.append(where(frame)[0])
        self._compare(i - 1)

    def finish(self) -> None:
        """The run is over: the last step's effect."""
        self._compare(len(self.log.tids) - 1)

    # -- the comparison --------------------------------------------------------------
    def _compare(self, step: int) -> None:
        state, memory = self._snapshot()
        changed = [k for k, v in state.items() if k in self._state and self._state[k] != v]
        if memory != self._memory:
            changed.extend(_changed_frames(self._memory, memory))
        self._state, self._memory = state, memory
        if not changed:
            return
        declared = self._writes(step)
        for key in changed:
            if key not in declared:
                self.problems.append(self._undeclared(step, key))

    def _writes(self, step: int) -> set[object]:
        if step < 0:
            return set()
        log = self.log
        out: set[object] = set()
        obj = log.objs[step]
        if obj is not None and log.accs[step] & WRITE:
            out.add(log.key(obj))
        for o, a in log.extra.get(step, ()):
            if a & WRITE:
                out.add(log.key(o))
        return out

    def _undeclared(self, step: int, key: object) -> Undeclared:
        log = self.log
        if step < 0:
            return Undeclared(0, "", "", "", self._name(key))
        task = self.sched.tasks[log.tids[step]].name
        location = self._where[step] if step < len(self._where) else ""
        return Undeclared(step + 1, task, log.kinds[step], location, self._name(key))

    def _name(self, key: object) -> str:
        if isinstance(key, int) and key < 0:
            objects = self.log.objects
            assert objects is not None
            return name_of(objects[-key - 1], self.sched.keyed)
        return name_of(key, self.sched.keyed)

    # -- the state ---------------------------------------------------------------------
    def _snapshot(self) -> tuple[dict[object, object], bytes]:
        state: dict[object, object] = {}
        objects = self.log.objects
        assert objects is not None
        for n, obj in enumerate(objects):
            value = _value(obj)
            if value is not None:
                state[-(n + 1)] = value
        for name, table in self.sched.keyed.items():
            if isinstance(table, AtomicArray):
                for i, v in enumerate(table.words):
                    state[(name, i)] = v
            elif isinstance(table, LockTable):
                for i, v in enumerate(table.counts):
                    state[(name, i)] = v
        return state, bytes(self.memory)


def _value(obj: object) -> object:
    if isinstance(obj, AtomicWord):
        return obj.value
    if isinstance(obj, SpinLock):
        return obj.held
    if isinstance(obj, Semaphore):
        return obj.count
    if isinstance(obj, TLB):
        return tuple(sorted(obj.entries()))
    return None


def _changed_frames(before: bytes, after: bytes) -> list[object]:
    out: list[object] = []
    for ppn in range(min(len(before), len(after)) // _FRAME):
        lo = ppn * _FRAME
        if before[lo : lo + _FRAME] != after[lo : lo + _FRAME]:
            out.append(ppn)
    return out


__all__ = ["FOOTPRINT", "VALIDATE_ENV", "FootprintValidator", "Undeclared"]
