"""The race that decides: the pair of racing steps a counterexample turns on.

A counterexample is a schedule; what a person needs from it is the one order
of two steps that made it fail.  DPOR already knows the candidates: the
races of the run (check/hb.py), pairs of dependent steps of two tasks that
happen in order only through their own dependence.  For each, latest first,
`deciding_races` runs the schedule again with the second step's task chosen
at the first step's choice point and the default choices after it (each
task runs on until it blocks: the second step's task reaches it first).
When that run fails, the pair alone is swapped: the second step's task runs
up to its racing step, then the first step's task has its turn back, then
the default choices (`_PairSwap`; the default run may go on to fail in
another way before the first task is back).  A swap counts when it reverses
the pair and breaks no oracle: with the pair the other way round, the run
passes.  Every race whose swap counts is named, latest first: the first is
the one the summary line says, the others are listed after it (a bug may
turn on more than one order: a put that raced the free, and the lookup that
raced the removal before it).  Measured on the mutant table
(tests/check/test_explain.py: a named pair has a step that runs the
function the mutant broke, on the step's stack at its point or called
within the step's segment, the code its task runs on, alone, until its next
point: check/stepcalls.py), this names such a step for 36 of the 64
mutants: 31 with the latest race alone, 35 with every race whose default
swap passes.  Tried and dropped: accepting a swap whose run passes with the
recorded choices after it (it named no race the two swaps above miss); and,
earlier, trying races on data before races of lock acquisitions.

When no race decides it, `fails_in_default_order` says whether the bug
needs a race at all: a run with no preemption (the default choice at every
point) that fails as well shows it does not.

Steps are named as the timeline numbers them (1-based, the tasks' starts
left out).  A race whose first step was no choice (the only task that could
go) is not tried: no schedule puts the other task there without reordering
more than the pair.

Rules: it only runs schedules of the model it is given (run_schedule, each
on a fresh Machine) and reads their logs; nothing it does changes a trace.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType

from pagemap.check.hb import HappensBefore
from pagemap.check.path import encode_schedule
from pagemap.check.recorder import where
from pagemap.check.runner import Model, Outcome, run_schedule
from pagemap.check.strategies import FollowChooser
from pagemap.sync.core import START, Task
from pagemap.sync.sim import EventLog, SimExecutor

MAX_TRIES = 24  # swapped schedules run before giving up


@dataclass(frozen=True)
class Race:
    """Steps `first` and `second` (as the timeline numbers them) raced, and with
    `second` before `first` (`schedule`) the run breaks no oracle."""

    first: int
    second: int
    schedule: str


class _Marking(FollowChooser):
    """A FollowChooser that notes the step each choice point lets run."""

    def __init__(self, choices: Sequence[int]) -> None:
        super().__init__(choices)
        self.event_of: list[int] = []  # choice point -> index of the step it chose

    def pick(self, runnable: Sequence[Task], current: Task | None, kind: str) -> Task:
        sched = self.sched
        log = sched.log if isinstance(sched, SimExecutor) else None
        self.event_of.append(len(log.tids) if log is not None else -1)
        return super().pick(runnable, current, kind)


class _PairSwap(FollowChooser):
    """The choices of `prefix`; then task `second` until it has taken `steps`
    log entries (the racing step its last), task `first` once, and the default
    choices after: the pair reordered, as little else moved as the run allows."""

    def __init__(self, prefix: Sequence[int], second: int, steps: int, first: int) -> None:
        super().__init__(prefix)
        self.second, self.steps, self.first = second, steps, first
        self.returned = False  # the first step's task has had its turn back

    def pick(self, runnable: Sequence[Task], current: Task | None, kind: str) -> Task:
        if len(self.path.choices) < len(self.want) or self.returned:
            return super().pick(runnable, current, kind)
        log = self.sched.log if isinstance(self.sched, SimExecutor) else None
        want = self.second
        if log is None or log.tids.count(self.second) > self.steps:
            want, self.returned = self.first, True
        for task in runnable:
            if task.tid == want:
                return self._chose(task, current, kind)
        return super().pick(runnable, current, kind)


def _site(frame: FrameType) -> str:
    return where(frame)[0]


def _run(model: Model, choices: Sequence[int], max_steps: int) -> tuple[Outcome, _Marking]:
    chooser = _Marking(choices)
    return run_schedule(model, chooser, max_steps, record=True, sites=_site), chooser


def step_numbers(log: EventLog) -> dict[int, int]:
    """Event index -> step number as the timeline shows it (starts left out)."""
    out: dict[int, int] = {}
    for e, kind in enumerate(log.kinds):
        if kind is not START:
            out[e] = len(out) + 1
    return out


def _nth(log: EventLog, tid: int, n: int) -> int | None:
    """The index of task `tid`'s n-th step (0-based), or None."""
    seen = 0
    for e, t in enumerate(log.tids):
        if t == tid:
            if seen == n:
                return e
            seen += 1
    return None


def _local(log: EventLog, e: int) -> int:
    tid = log.tids[e]
    return sum(1 for t in log.tids[:e] if t == tid)


def _reversed(before: EventLog, after: EventLog, i: int, j: int) -> bool:
    """Whether `after` ran step j of `before` ahead of step i: the same task's
    same-numbered step, at the same code, in the other order."""
    ti, tj = before.tids[i], before.tids[j]
    ni, nj = _nth(after, ti, _local(before, i)), _nth(after, tj, _local(before, j))
    if nj is None or before.sites is None or after.sites is None:
        return False
    if after.sites[nj] != before.sites[j]:
        return False
    if ni is None:
        return True  # the first step's task never got that far: j came first
    return after.sites[ni] == before.sites[i] and nj < ni


def deciding_races(model: Model, choices: Sequence[int], max_steps: int) -> list[Race]:
    """The races of the run of `choices` (a trace's schedule) that its
    violation turns on, latest first: each race whose swap, with the default
    choices after it, reverses the pair and passes.  Empty when the run
    breaks no oracle, or no swap of the first MAX_TRIES races tried passes."""
    outcome, chooser = _run(model, choices, max_steps)
    log = outcome.log
    if outcome.violation is None or log is None:
        return []
    numbers = step_numbers(log)
    choice_at = {e: k for k, e in enumerate(chooser.event_of)}
    found: list[Race] = []
    tries = 0
    for i, j in sorted(HappensBefore(log).races(), key=lambda r: (-r[1], -r[0])):
        k = choice_at.get(i)
        tj = log.tids[j]
        if k is None or i not in numbers or j not in numbers or not log.enabled[i] >> tj & 1:
            continue
        if tries >= MAX_TRIES:
            break
        tries += 1
        prefix = chooser.path.choices[:k]
        for swapper in (
            FollowChooser([*prefix, tj]),
            _PairSwap(prefix, tj, _local(log, j), log.tids[i]),
        ):
            swapped = run_schedule(model, swapper, max_steps, record=True, sites=_site)
            if (
                swapped.violation is None
                and swapped.stopped is None
                and swapped.log is not None
                and _reversed(log, swapped.log, i, j)
            ):
                found.append(Race(numbers[i], numbers[j], encode_schedule(swapper.path.choices)))
                break
    return found


def fails_in_default_order(model: Model, max_steps: int) -> bool:
    """Whether the run with no preemption (the default choice at every point:
    each task runs on until it blocks or ends) breaks an oracle too."""
    outcome = run_schedule(model, FollowChooser([]), max_steps)
    return outcome.violation is not None


__all__ = ["MAX_TRIES", "Race", "deciding_races", "fails_in_default_order", "step_numbers"]
