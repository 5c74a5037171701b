"""What every strategy shares: the candidates at a decision, and the explorer protocol.

An *explorer* lives for a whole exploration and hands out, schedule after
schedule, a *chooser*: the `Strategy` the SimExecutor consults at each
decision of that one schedule.  A chooser writes the schedule's `Path`: the
task chosen at each choice point, and the preemptions among those choices.
After the run the explorer is told how it went (`finished`), and DFS and
DPOR read the run's steps from there to plan the next schedule.

Schedule number i of a random or PCT exploration depends only on (seed, i), so
worker processes can split an exploration by schedule numbers and agree with
a serial run; DFS and DPOR split by schedule prefixes instead (check/fanout).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pagemap.check.path import Path
from pagemap.sync.core import RELAX, Strategy, Task
from pagemap.sync.pool import TaskPool

if TYPE_CHECKING:
    from pagemap.check.outcome import Outcome


class Nondeterminism(Exception):
    """A schedule prefix replayed differently: the model depends on something
    other than the schedule (a clock, an unseeded random source, a set
    iterated in address order)."""


class SleepBlocked(Exception):
    """DPOR: every task that could go next is asleep; what follows is a
    reordering of a schedule already explored.  Not a violation."""


class BoundExceeded(Exception):
    """DPOR: the only continuation left costs a preemption past the bound."""


class Chooser(Strategy):
    """A per-schedule strategy writing its Path."""

    def __init__(self) -> None:
        self.path = Path()
        self.sched: object = None

    def start(self, sched: object) -> None:
        self.sched = sched

    def _chose(self, nxt: Task, current: Task | None, kind: str) -> Task:
        self.path.choices.append(nxt.tid)
        if current is not None and nxt is not current and kind is not RELAX:
            self.path.preemptions += 1
        return nxt


class Explorer:
    """An exploration's policy: one chooser per schedule, until exhausted."""

    name = "abstract"
    records_steps = False  # True: runs must log every step (DFS/DPOR trace counting)
    counts_traces = False  # True: `distinct` counts Mazurkiewicz traces, not schedules

    def __init__(self) -> None:
        self.exhausted = False
        self.distinct = 0
        self.redundant = 0  # schedules DPOR cut short as reorderings of explored ones
        # The greenlets every schedule's tasks run on, reused from schedule to
        # schedule: each chooser hands it to its run (Strategy.pool).
        self.pool = TaskPool()

    def chooser(self, index: int) -> Chooser | None:
        """The chooser for schedule number `index`, or None once exhausted."""
        raise NotImplementedError

    def finished(self, chooser: Chooser, outcome: Outcome) -> None:
        """The schedule `chooser` drove is over."""


__all__ = [
    "BoundExceeded",
    "Chooser",
    "Explorer",
    "Nondeterminism",
    "SleepBlocked",
]
