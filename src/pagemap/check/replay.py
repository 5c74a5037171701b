"""Replaying a trace step by step, and checking that it still fits.

`replay(model, trace)` re-runs the trace's schedule on a fresh Machine with
every step logged, and returns one row per step (check/trace.py's Step).  It
says whether the run *followed* the schedule: every recorded choice could be
made, and the run made no other.  A run that did not follow it no longer
tests what the trace recorded (the model or the kernel changed).

A step-budget violation of a livelock repeats one cycle of steps until the
budget runs out; its rows are cut to the steps before the cycle and one turn
of it (`cycle`), which is what a person needs to read.
"""

from __future__ import annotations

from dataclasses import dataclass

from pagemap.check.context import RunContext
from pagemap.check.oracles import LIVENESS, Violation
from pagemap.check.runner import DEFAULT_WATCHDOG, Model, run_schedule
from pagemap.check.strategies import FollowChooser
from pagemap.check.trace import Recorder, Step, Trace
from pagemap.sync.watchdog import Watchdog

MAX_PERIOD = 400  # the longest livelock cycle looked for, in steps


@dataclass
class Replay:
    rows: list[Step]
    violation: Violation | None
    diverged: bool  # a recorded choice could not be made: the model or kernel changed
    followed: bool  # every recorded choice was made, and no other
    total_steps: int = 0
    cycle: tuple[int, int] | None = None  # (steps before the cycle, steps in one turn)


def replay(
    model: Model, trace: Trace, watchdog: Watchdog | float | None = DEFAULT_WATCHDOG
) -> Replay:
    """Re-run `trace.schedule` on `model` under the trace's step budget."""
    chooser = FollowChooser(trace.schedule)
    recorders: list[Recorder] = []

    def observe(ctx: RunContext) -> None:
        recorder = Recorder(ctx.sched)
        ctx.sched.on_event = recorder
        recorders.append(recorder)

    outcome = run_schedule(
        model, chooser, trace.max_steps, record=True, watchdog=watchdog, observe=observe
    )
    rows = recorders[0].close() if recorders else []
    total = len(rows)
    cycle = None
    if outcome.violation is not None and outcome.violation.oracle == LIVENESS:
        cycle = find_cycle(rows)
        if cycle is not None:
            prefix, period = cycle
            rows = rows[: prefix + period]
    if rows and outcome.violation is not None:
        mark_failing(rows, outcome.violation)
    return Replay(rows, outcome.violation, chooser.diverged, chooser.followed, total, cycle)


def mark_failing(rows: list[Step], violation: Violation) -> None:
    """Mark the rows the oracle's message is about: the step at which it was
    seen, and the steps on the objects the message names."""
    rows[-1].failing = True
    message = violation.message
    for row in rows:
        if row.obj and (f"{row.obj} " in message or message.endswith(row.obj)):
            row.failing = True


def find_cycle(rows: list[Step]) -> tuple[int, int] | None:
    """(steps before the cycle, its length) if the rows end by repeating one
    cycle at least three times; None otherwise."""
    keys = [(r.task, r.operation, r.obj, r.location) for r in rows]
    n = len(keys)
    for period in range(1, min(MAX_PERIOD, n // 3) + 1):
        if any(keys[n - 1 - k] != keys[n - 1 - k - period] for k in range(2 * period)):
            continue
        start = n - 1 - period
        while start >= 0 and keys[start] == keys[start + period]:
            start -= 1
        return start + 1, period
    return None


__all__ = ["Replay", "find_cycle", "replay"]
