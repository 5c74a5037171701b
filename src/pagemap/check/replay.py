"""Replaying a trace step by step, and checking that it still fits.

`replay(model, trace)` re-runs the trace's schedule on a fresh Machine with
every step logged, and returns one row per step (report/model.py's Row).  It
says whether the run *followed* the schedule: every recorded choice could be
made, and the run made no other.  A run that did not follow it no longer
tests what the trace recorded (the model or the kernel changed).

A step-budget violation of a livelock repeats one cycle of steps until the
budget runs out; its rows are cut to the steps before the cycle and one turn
of it (`cycle`), which is what a person needs to read.

With `states`, each row also carries the machine's state after it, and the
replay the state before the first step (check/snapshot.py): what the timeline
page shows on a click.  Rows past STATE_ROWS carry no state of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pagemap.check.context import RunContext
from pagemap.check.explain import MAX_TRIES, Race, deciding_races, fails_in_default_order
from pagemap.check.recorder import Recorder
from pagemap.check.report.model import Row, TaskInfo, ran_said
from pagemap.check.runner import DEFAULT_WATCHDOG, Model, run_schedule
from pagemap.check.stepcalls import StepCalls
from pagemap.check.strategies import FollowChooser
from pagemap.check.trace import Trace
from pagemap.oracles import LIVENESS, Violation
from pagemap.sync.watchdog import Watchdog

MAX_PERIOD = 400  # the longest livelock cycle looked for, in steps
STATE_ROWS = 5000  # rows that carry the machine's state, with `states`


@dataclass
class Replay:
    rows: list[Row]
    violation: Violation | None
    diverged: bool  # a recorded choice could not be made: the model or kernel changed
    followed: bool  # every recorded choice was made, and no other
    total_steps: int = 0
    cycle: tuple[int, int] | None = None  # (steps before the cycle, steps in one turn)
    tasks: list[TaskInfo] = field(default_factory=list)  # every task, with its core
    initial: dict[str, str] = field(default_factory=dict)  # the state before step 1
    race: str = ""  # with `explain`: the race the violation turns on, in words


def replay(
    model: Model,
    trace: Trace,
    watchdog: Watchdog | float | None = DEFAULT_WATCHDOG,
    states: bool = False,
    explain: bool = False,
) -> Replay:
    """Re-run `trace.schedule` on `model` under the trace's step budget.  With
    `explain`, a violation also gets the races it turns on (check/explain.py):
    the first one's two rows marked `racing`, the others' `also_racing`, and
    `race` saying them in words."""
    chooser = FollowChooser(trace.schedule)
    recorders: list[Recorder] = []

    def observe(ctx: RunContext) -> None:
        calls = StepCalls()
        recorder = Recorder(ctx.sched, ctx.machine, states, STATE_ROWS, calls)
        ctx.sched.on_event = recorder
        ctx.sched.on_end = recorder.settle  # before unwinding tasks releases their locks
        calls.install(ctx)
        recorders.append(recorder)

    outcome = run_schedule(
        model,
        chooser,
        trace.max_steps,
        record=True,
        watchdog=watchdog,
        observe=observe,
        keep_objects=states,
    )
    recorder = recorders[0] if recorders else None
    rows = recorder.close() if recorder is not None else []
    total = len(rows)
    cycle = None
    if outcome.violation is not None and outcome.violation.oracle == LIVENESS:
        cycle = find_cycle(rows)
        if cycle is not None:
            prefix, period = cycle
            rows = rows[: prefix + period]
    if rows and outcome.violation is not None:
        mark_failing(rows, outcome.violation)
    race = ""
    if explain and chooser.followed and outcome.violation is not None:
        race = _explain(model, trace, rows, outcome.violation)
    return Replay(
        rows,
        outcome.violation,
        chooser.diverged,
        chooser.followed,
        total,
        cycle,
        recorder.tasks() if recorder is not None else [],
        recorder.initial if recorder is not None else {},
        race,
    )


def _explain(model: Model, trace: Trace, rows: list[Row], violation: Violation) -> str:
    """Mark the racing pair in `rows`; the race in words, or why there is none."""
    if violation.oracle == LIVENESS:
        return ""  # a livelock or a deadlock: no one pair of steps decides it
    found = deciding_races(model, trace.schedule, trace.max_steps)
    if not found:
        if fails_in_default_order(model, trace.max_steps):
            return (
                "no one race decides it: it fails in the default order too (no "
                "preemption: each task runs on until it blocks or ends), so the bug "
                f"needs no race, and swapping any race of this run alone (up to {MAX_TRIES} "
                "tried) still fails"
            )
        return (
            "no one race decides it: swapping any race of this run alone (up to "
            f"{MAX_TRIES} tried) still fails, or reorders more than the pair"
        )
    first, *others = found
    a, b = rows[first.first - 1], rows[first.second - 1]
    a.racing = b.racing = True
    said = (
        f"step {a.step} ({_said(a)}) raced step {b.step} ({_said(b)}); with {b.step} "
        f"before {a.step} no oracle fails (schedule {first.schedule})"
    )
    for race in others:
        rows[race.first - 1].also_racing = rows[race.second - 1].also_racing = True
    return said + _others_said(rows, others)


def _others_said(rows: list[Row], others: list[Race]) -> str:
    """The other races whose swap passes, a line each ("" when there are none)."""
    if not others:
        return ""
    n = len(others)
    head = f"\n{n} more race{'s' if n > 1 else ''} decide{'' if n > 1 else 's'} it too:"
    return head + "".join(
        f"\n- step {r.first} ({_said(rows[r.first - 1])}) and step {r.second} "
        f"({_said(rows[r.second - 1])}), schedule {r.schedule}"
        for r in others
    )


def _said(row: Row) -> str:
    """A racing step in words: its task, operation, code, and what else it ran."""
    ran = f"; {ran_said(row.ran)}" if row.ran else ""
    return f"{row.task}: {row.operation} {row.obj}, {row.location}{ran}"


def mark_failing(rows: list[Row], violation: Violation) -> None:
    """Mark the rows the oracle's message is about: the step at which it was
    seen, and the steps on the objects the message names."""
    rows[-1].failing = True
    message = violation.message
    for row in rows:
        if row.obj and (f"{row.obj} " in message or message.endswith(row.obj)):
            row.failing = True


def find_cycle(rows: list[Row]) -> tuple[int, int] | None:
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
