"""Races reached: which kernel functions some scenario raced, and which none did.

A line reached is not a race reached.  A kernel function that takes a lock or
touches a shared word is *raced* when, in some schedule of some scenario, one
of its steps and a dependent step of another task form a race that DPOR
reverses (check/hb.py `races`): the other task's step was explored on both
sides of it.  `census(model)` explores a model with bounded DPOR, every step
logged with the function its point was taken in (`site`), and counts for each
function the steps taken there and the races it took part in.  `pagemap check
--coverage` adds the censuses of every scenario and lists the functions that
take points but that no scenario races, less those `unreached.txt` lists as
`FILE: race QUALNAME  # reason`.

Rules: a census only reads the runs it makes; a function is named by its file
under the package and its qualified name ("kernel/removal.py:
Removal._free_marked"), the innermost frame of kernel/ or hw/ that the point
was taken from.  Steps outside both (a scenario's own code) are not counted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from types import FrameType

from pagemap.check.hb import HappensBefore
from pagemap.check.runner import DEFAULT_MAX_STEPS, Model, run_schedule
from pagemap.check.strategies import make_explorer

CENSUS_BOUND = 1  # preemptions: every race a single reordering exposes
CENSUS_BUDGET = 20_000  # schedules per model, at most
_ROOTS = ("/pagemap/kernel/", "/pagemap/hw/")


def site(frame: FrameType | None) -> str:
    """The kernel (or hardware) function a point is taken in, or "" outside both."""
    while frame is not None:
        filename = frame.f_code.co_filename
        for root in _ROOTS:
            at = filename.find(root)
            if at >= 0:
                # A local function or comprehension counts as the function it is in.
                qualname = frame.f_code.co_qualname.split(".<locals>", 1)[0]
                return f"{filename[at + len('/pagemap/') :]}: {qualname}"
        frame = frame.f_back
    return ""


@dataclass
class Census:
    """Steps and races per function, over every schedule explored."""

    steps: Counter[str] = field(default_factory=Counter)
    raced: Counter[str] = field(default_factory=Counter)
    schedules: int = 0

    def add(self, other: Census) -> None:
        self.steps.update(other.steps)
        self.raced.update(other.raced)
        self.schedules += other.schedules

    def unraced(self) -> list[str]:
        """Functions that take points and that no race of the census involved."""
        return sorted(f for f in self.steps if not self.raced[f])

    def to_json(self) -> dict[str, object]:
        return {"steps": dict(self.steps), "raced": dict(self.raced), "schedules": self.schedules}

    @classmethod
    def from_json(cls, doc: dict[str, object]) -> Census:
        steps, raced, schedules = doc["steps"], doc["raced"], doc["schedules"]
        assert isinstance(steps, dict) and isinstance(raced, dict) and isinstance(schedules, int)
        return cls(Counter(steps), Counter(raced), schedules)


def census(
    model: Model,
    bound: int = CENSUS_BOUND,
    budget: int = CENSUS_BUDGET,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> Census:
    """Explore `model` with DPOR at `bound` (to the end, or `budget` schedules)
    and count, per function, the steps taken and the races reversed."""
    explorer = make_explorer("dpor", 0, bound)
    out = Census()
    for index in range(budget):
        chooser = explorer.chooser(index)
        if chooser is None:
            break
        outcome = run_schedule(model, chooser, max_steps, record=True, sites=site)
        explorer.finished(chooser, outcome)
        out.schedules += 1
        log = outcome.log
        if log is None or log.sites is None or outcome.stopped is not None:
            continue
        sites = log.sites
        out.steps.update(s for s in sites if s)
        for i, j in HappensBefore(log, release_races=bound is not None).races():
            for step in (i, j):
                if sites[step]:
                    out.raced[sites[step]] += 1
    return out


__all__ = ["CENSUS_BOUND", "CENSUS_BUDGET", "Census", "census", "site"]
