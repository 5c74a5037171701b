"""Following a recorded schedule, and editing one as switches.

`FollowChooser` makes the choices of a recorded schedule, then the default
ones; it notes whether the schedule still fits (a recorded task that cannot
go where the record says means the model or the kernel changed) and where
the run departs from the default (its *switches*).  `SwitchChooser` runs the
default schedule except at the listed choice points: the shrinker's form,
since deleting a switch always leaves a schedule that runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from pagemap.check.path import default_pick
from pagemap.check.strategies.base import Chooser
from pagemap.sync.core import Task


class FollowChooser(Chooser):
    def __init__(self, choices: Sequence[int]) -> None:
        super().__init__()
        self.want = list(choices)
        self.diverged_at: int | None = None  # the first choice point that did not fit
        self.switches: dict[int, int] = {}

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    @property
    def followed(self) -> bool:
        """Every recorded choice was made, and the run made no other."""
        return self.diverged_at is None and len(self.path.choices) == len(self.want)

    def pick(self, runnable: Sequence[Task], current: Task | None, kind: str) -> Task:
        alts = runnable
        k = len(self.path.choices)
        default = default_pick(alts, current, kind)
        nxt = default
        if k < len(self.want):
            want = self.want[k]
            for task in alts:
                if task.tid == want:
                    nxt = task
                    break
            else:
                if self.diverged_at is None:
                    self.diverged_at = k
        if nxt is not default:
            self.switches[k] = nxt.tid
        return self._chose(nxt, current, kind)


class SwitchChooser(Chooser):
    def __init__(self, switches: dict[int, int]) -> None:
        super().__init__()
        self.switches = switches
        self.applied: dict[int, int] = {}  # the switches that changed the schedule

    def pick(self, runnable: Sequence[Task], current: Task | None, kind: str) -> Task:
        alts = runnable
        k = len(self.path.choices)
        nxt = default_pick(alts, current, kind)
        want = self.switches.get(k)
        if want is not None and want != nxt.tid:
            for task in alts:
                if task.tid == want:
                    self.applied[k] = want
                    nxt = task
                    break
        return self._chose(nxt, current, kind)
