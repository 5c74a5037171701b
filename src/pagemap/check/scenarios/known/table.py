"""`pagemap check --known`: every row of the zoo, with its fix off and on.

A row is expected when, with the fix off, the default portfolio (a short PCT
pass, then DPOR with at most two preemptions) finds a violation within the
row's budget, and, with the fix on, bounded DPOR covers the scenario to the
end with every oracle holding and shows a witness: a schedule in which the
row's racing pair of steps ran in the racing order, by two tasks.  A row
whose fix-on run never reaches its race fails, as a scenario that found
nothing to check would otherwise pass.

Rules: a row runs in this process, one schedule at a time; it only reads
the runs it makes (the steps' locations, as check/recorder.py names them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from pagemap.check.context import RunContext
from pagemap.check.explore import explore_model
from pagemap.check.path import encode_schedule
from pagemap.check.recorder import where
from pagemap.check.replay import replay
from pagemap.check.runner import DEFAULT_MAX_STEPS, Outcome, run_schedule
from pagemap.check.scenario import ScenarioModel
from pagemap.check.scenarios.known import BUGS
from pagemap.check.scenarios.known.bugs import Bug, Step
from pagemap.check.shrink import shrink_trace
from pagemap.check.strategies import DEFAULT_BOUND, make_explorer
from pagemap.check.trace import Trace

# The portfolio's PCT pass (command.py's PORTFOLIO_PCT), then DPOR.
PCT_PASS = 100
# Schedules each half of a row may take (the issue's: found within 20,000).
BUDGET = 20_000


@dataclass
class Witness:
    """A fix-on schedule where the racing pair ran in the racing order."""

    index: int  # the schedule's number in the DPOR exploration
    schedule: str  # as traces write it (check/path.py)
    first: int  # 1-based step numbers of the pair
    second: int

    def describe(self) -> str:
        return f"schedule {self.index} ({self.schedule}): steps {self.first} then {self.second}"


@dataclass
class Row:
    bug: Bug
    found: bool = False
    oracle: str = ""
    off_schedules: int = 0
    off_seconds: float = 0.0
    trace: Trace | None = None  # shrunk, with the fix off
    held: bool = False
    covered: bool = False  # the fix-on exploration reached its end
    on_schedules: int = 0
    on_seconds: float = 0.0
    bound: int = DEFAULT_BOUND
    on_violation: str = ""
    witness: Witness | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def expected(self) -> bool:
        return not self.problems

    def verdict(self) -> str:
        if self.on_violation:
            return "violated"
        if not self.covered:
            return "not covered"
        return "holds" if self.witness is not None else "vacuous"

    def to_json(self) -> dict[str, Any]:
        w = self.witness
        return {
            "bug": self.bug.scenario,
            "title": self.bug.title,
            "year": self.bug.year,
            "commit": self.bug.commit,
            "racy": [str(s) for s in self.bug.racy],
            "fix_off": {
                "found": self.found,
                "schedules": self.off_schedules,
                "seconds": round(self.off_seconds, 3),
                "oracle": self.oracle,
                "steps": self.trace.steps if self.trace is not None else None,
                "trace": self.trace.to_dict() if self.trace is not None else None,
            },
            "fix_on": {
                "verdict": self.verdict(),
                "schedules": self.on_schedules,
                "seconds": round(self.on_seconds, 3),
                "bound": self.bound,
                "covered": self.covered,
                "violation": self.on_violation or None,
                "witness": None
                if w is None
                else {
                    "schedule_index": w.index,
                    "schedule": w.schedule,
                    "steps": [w.first, w.second],
                },
            },
            "expected": self.expected,
            "problems": self.problems,
        }


def _location(frame: FrameType | None) -> str:
    return where(frame)[0]


def model_of(bug: Bug, fix: int) -> ScenarioModel:
    from pagemap.check.scenarios import lookup

    return lookup(bug.scenario).model({"fix": fix})


def find(bug: Bug, row: Row, budget: int = BUDGET) -> None:
    """The fix off: the default portfolio, PCT's pass then DPOR, until the
    first violation; shrunk."""
    model = model_of(bug, 0)
    pct = explore_model(model, "pct", budget=min(PCT_PASS, budget), shrink=False)
    row.off_schedules, row.off_seconds = pct.schedules, pct.seconds
    trace = pct.trace
    if trace is None and budget > pct.schedules:
        dpor = explore_model(
            model, "dpor", bound=DEFAULT_BOUND, budget=budget - pct.schedules, shrink=False
        )
        row.off_schedules += dpor.schedules
        row.off_seconds += dpor.seconds
        trace = dpor.trace
    if trace is None:
        row.problems.append(
            f"with the fix off, no violation in {row.off_schedules:,} schedules: the bug "
            "is not found"
        )
        return
    row.found = True
    row.oracle = trace.oracle
    row.trace = shrink_trace(model, trace)


def hold(bug: Bug, row: Row, budget: int = BUDGET) -> None:
    """The fix on: bounded DPOR to the end, every step located, looking for
    the witness as it goes."""
    model = model_of(bug, 1)
    explorer = make_explorer("dpor", 0, row.bound)
    t0 = time.perf_counter()
    for index in range(budget):
        chooser = explorer.chooser(index)
        if chooser is None:
            break
        names: dict[int, str] = {}

        def observe(ctx: RunContext, names: dict[int, str] = names) -> None:
            names.update((t.tid, t.name) for t in ctx.sched.tasks)

        outcome = run_schedule(
            model, chooser, DEFAULT_MAX_STEPS, record=True, observe=observe, sites=_location
        )
        explorer.finished(chooser, outcome)
        row.on_schedules += 1
        if outcome.violation is not None:
            row.on_violation = f"{outcome.violation.oracle}: {outcome.violation.message}"
            break
        if row.witness is None and outcome.stopped is None:
            row.witness = witness(bug.racy, outcome, names, index)
    row.on_seconds = time.perf_counter() - t0
    row.covered = explorer.exhausted and not row.on_violation
    if row.on_violation:
        row.problems.append(f"with the fix on, {row.on_violation}")
    elif not row.covered:
        row.problems.append(
            f"with the fix on, DPOR (at most {row.bound} preemptions) did not cover the "
            f"scenario in {row.on_schedules:,} schedules"
        )
    elif row.witness is None:
        row.problems.append(
            f"with the fix on, no schedule ran {bug.racy[0]} and then {bug.racy[1]}: the "
            "scenario never reached its race (a vacuous pass)"
        )


def witness(
    pair: tuple[Step, Step], outcome: Outcome, names: dict[int, str], index: int
) -> Witness | None:
    """The first step of `pair[0]` followed by a step of `pair[1]` by another task."""
    log = outcome.log
    if log is None or log.sites is None:
        return None
    first = pair[0]
    seen: set[int] = set()  # tasks that ran the first step so far
    at: dict[int, int] = {}
    for i, (location, kind, tid) in enumerate(zip(log.sites, log.kinds, log.tids, strict=True)):
        task = names.get(tid, "")
        if first.matches(location, kind, task) and tid not in seen:
            seen.add(tid)
            at[tid] = i
        if pair[1].matches(location, kind, task) and any(t != tid for t in seen):
            start = min(at[t] for t in seen if t != tid)
            return Witness(index, encode_schedule(outcome.schedule), start + 1, i + 1)
    return None


def run_row(bug: Bug, budget: int = BUDGET) -> Row:
    row = Row(bug)
    find(bug, row, budget)
    if row.trace is not None:
        missing = mechanism_missing(bug, row.trace)
        if missing:
            row.problems.append(f"the shrunk trace lacks the published mechanism: {missing}")
    hold(bug, row, budget)
    return row


def trace_steps(trace: Trace) -> list[tuple[str, str, str]]:
    """(location, operation, task) of every step of `trace`, replayed on its
    own scenario."""
    from pagemap.check.scenarios import lookup

    result = replay(lookup(trace.scenario).model(trace.params), trace)
    return [(r.location, r.operation, r.task) for r in result.rows]


def mechanism_missing(bug: Bug, trace: Trace) -> str:
    """ "" if the trace runs the bug's mechanism in order and none of its
    absent steps; else what is wrong, in words."""
    steps = trace_steps(trace)
    pos = 0
    for want in bug.mechanism:
        while pos < len(steps) and not want.matches(*steps[pos]):
            pos += 1
        if pos == len(steps):
            return f"no {want} after the steps before it"
        pos += 1
    for never in bug.absent:
        if any(never.matches(*s) for s in steps):
            return f"it runs {never}, which the bug skips"
    return ""


def rows(names: list[str] | None = None, budget: int = BUDGET) -> list[Row]:
    return [run_row(b, budget) for b in BUGS if names is None or b.scenario in names]


def markdown(results: list[Row]) -> str:
    """docs/known-bugs.md: the table, then each bug's shrunk trace, short."""
    out = [
        "# Known bugs, found again",
        "",
        "Generated by `pagemap check --known --markdown` (issue 20); do not edit.",
        "Each row is a scenario of `src/pagemap/check/scenarios/known/`, run with its",
        "fix off (`-p fix=0`: the default portfolio must find it) and on (bounded DPOR",
        "must cover it with every oracle holding, and show a *witness*: a schedule",
        "where the racing pair of steps ran in the racing order).  Schedule counts",
        "are deterministic; seconds are one machine's.",
        "",
        "| bug | commit | fix off: schedules | s | oracle | trace steps "
        "| fix on: schedules | bound | verdict | witness |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        b = r.bug
        steps = r.trace.steps if r.trace is not None else "-"
        w = r.witness.describe() if r.witness is not None else "none"
        out.append(
            f"| `{b.scenario}` | {b.commit} ({b.year}) | {r.off_schedules:,} "
            f"| {r.off_seconds:.2f} | {r.oracle or '-'} | {steps} "
            f"| {r.on_schedules:,} | {r.bound} | {r.verdict()} | {w} |"
        )
    for r in results:
        b = r.bug
        out += ["", f"## {b.scenario}: {b.title}", "", f"{b.commit} ({b.year}).  "]
        out[-1] += f"Racing pair: {b.racy[0]}, then {b.racy[1]}."
        if r.trace is None:
            out += ["", "Not found with the fix off."]
            continue
        out += [
            "",
            f"Fix off: {r.trace.oracle}: {r.trace.message}",
            "",
            "```",
            *_short_trace(b, r.trace),
            "```",
        ]
    return "\n".join(out) + "\n"


def _short_trace(bug: Bug, trace: Trace) -> list[str]:
    """One line a step: number, task, operation, where; the mechanism's steps
    marked with *."""
    lines = []
    for i, (location, operation, task) in enumerate(trace_steps(trace), 1):
        mark = "*" if any(s.matches(location, operation, task) for s in bug.mechanism) else " "
        lines.append(f"{mark}{i:3} {task:9} {operation:11} {location}")
    return lines


__all__ = ["BUDGET", "Row", "Witness", "markdown", "mechanism_missing", "rows", "run_row"]
