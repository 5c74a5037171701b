"""What a lock mutant's scheduler can see: each lock site's sections, measured.

In the SimExecutor a task runs without interruption from one scheduling point
to the next, so dropping a lock can only matter where another task could run
while the lock is held.  This census watches the unmutated kernel over the
runs auto_map.py already makes (per scenario: the default schedule and RUNS -
1 random ones) and CENSUS_RUNS - RUNS more random ones, and records:

- each site's sections: a task's ACQUIRE point made while the site's item is
  being entered (the frame of the site's function is at that item's
  BEFORE_WITH instruction), and the object it took;
- for every object any task takes (by any code, a site's or not): the tasks
  that take it, and the most points a task makes strictly between taking it
  and giving it back (its "unlock" or "up" point).

From those, a site's category (the `--mutants --auto` table shows it):

- ATOMIC, "atomic in the model": tasks ran the section, and no task ever
  reached a point while holding the object it takes, in this section or any
  other.  Without the lock the section still runs in one piece, and no holder
  is ever caught between two points, so no schedule tells the mutant from the
  kernel: a blind spot of the checker at the model's granularity, reported,
  never excused.  (The --validate footprint check can still see it: the
  section's accesses move to a step that does not declare them.)
- UNCONTENDED, "never contended": points while held, but no run had two tasks
  take the object (or no task ran the section: only set-up code, or nothing):
  nothing raced it, a gap of the scenarios.
- RACED: contended, with points while held; a survivor here is unexplained.

A measurement over a few schedules, not a proof: a point on a path those runs
did not take, or a contention they did not reach, is missed.
"""

from __future__ import annotations

import dis
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import CodeType, FrameType
from typing import TYPE_CHECKING

from pagemap.sync.core import ACQUIRE

if TYPE_CHECKING:
    from pagemap.check.context import RunContext
    from pagemap.check.mutants.auto import LockMutant

ATOMIC = "atomic"
UNCONTENDED = "uncontended"
RACED = "raced"
LABELS = {
    ATOMIC: "atomic in the model",
    UNCONTENDED: "never contended",
    RACED: "unexplained",
}
# Schedules per scenario: auto_map's RUNS (the default schedule and random
# ones), then more random ones.  Ten found every contention thirty did; a
# hundred found one more (mremap's vmr_lock, in mremap-race).
CENSUS_RUNS = 10
RELEASES = ("unlock", "up")  # the points that give a lock or semaphore back


@dataclass
class Section:
    """One site's sections, over every run of the census."""

    runs: int = 0  # sections a task began
    points: int = 0  # the most points a task made holding the lock (in any section)
    contended: bool = False  # some run had two tasks take its object

    @property
    def category(self) -> str:
        if self.runs and not self.points:
            return ATOMIC
        return RACED if self.contended else UNCONTENDED

    def describe(self) -> str:
        if not self.runs:
            return "no task runs it"
        if not self.points:
            return f"no point while held, {self.runs} sections"
        taken = "contended" if self.contended else "one task takes it"
        return f"up to {self.points} points while held, {taken}"


def _codes(code: CodeType) -> Iterator[CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _codes(const)


def _enter_offset(m: LockMutant) -> tuple[CodeType, int] | None:
    """The code of the site's function and the offset of its item's BEFORE_WITH."""
    site = m.site
    for code in _codes(m.function.__code__):
        if code.co_qualname != site.function or code.co_firstlineno != site.first_line:
            continue
        enters = [
            i.offset
            for i in dis.get_instructions(code)
            if i.opname == "BEFORE_WITH"
            and (i.positions and (i.positions.lineno, i.positions.col_offset))
            == (site.line, site.col)
        ]
        if site.item < len(enters):
            return code, enters[site.item]
    return None


class Census:
    """Measures the sections of `mutants`' sites; `observe` is run_schedule's hook."""

    def __init__(self, mutants: Sequence[LockMutant]) -> None:
        self.sections = [Section() for _ in mutants]
        self._at: dict[CodeType, dict[int, int]] = {}
        for n, m in enumerate(mutants):
            found = _enter_offset(m)
            if found is not None:
                self._at.setdefault(found[0], {})[found[1]] = n

    def _site(self, frame: FrameType | None) -> int | None:
        """The site whose `with` item is being entered, if the ACQUIRE comes
        from one: the innermost frame of a site's function decides (a lock
        taken by a call in a section's body is not that section's)."""
        at = self._at
        while frame is not None:
            offsets = at.get(frame.f_code)
            if offsets is not None:
                return offsets.get(frame.f_lasti)
            frame = frame.f_back
        return None

    def observe(self, ctx: RunContext) -> None:
        """Watch one run: every point of every task, from before the first."""
        sched = ctx.sched
        counts: dict[int, int] = {}  # tid -> points so far
        takers: dict[object, set[int]] = {}  # object -> the tasks that took it
        held: dict[tuple[int, object], int] = {}  # (tid, object) -> count at the take
        inside: dict[object, int] = {}  # object -> most points inside one holding
        opened: dict[int, set[object]] = {}  # site -> the objects its sections took
        sections = self.sections
        site_of: Callable[[FrameType | None], int | None] = self._site

        def step() -> None:
            cur = sched.current
            assert cur is not None
            tid = cur.tid
            n = counts[tid] = counts.get(tid, 0) + 1
            obj = cur.obj
            key = obj if type(obj) is tuple else id(obj)
            if cur.access == ACQUIRE:
                takers.setdefault(key, set()).add(tid)
                held[tid, key] = n
                site = site_of(sys._getframe(1))
                if site is not None:
                    sections[site].runs += 1
                    opened.setdefault(site, set()).add(key)
            elif cur.kind in RELEASES:
                taken = held.pop((tid, key), None)
                if taken is not None:
                    inside[key] = max(inside.get(key, 0), n - taken - 1)

        def end() -> None:
            for site, keys in opened.items():
                section = sections[site]
                section.points = max(section.points, *(inside.get(k, 0) for k in keys))
                if any(len(takers[k]) > 1 for k in keys):
                    section.contended = True

        ctx.every_step(step)
        ctx.cleanup(end)


__all__ = ["ATOMIC", "CENSUS_RUNS", "LABELS", "RACED", "UNCONTENDED", "Census", "Section"]
