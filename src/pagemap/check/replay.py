"""Replaying a trace step by step."""

from __future__ import annotations

from dataclasses import dataclass

import greenlet

from pagemap.check.oracle import Violation
from pagemap.check.runner import DEFAULT_MAX_STEPS, Model, run_schedule
from pagemap.check.strategy import FollowStrategy
from pagemap.check.trace import Recorder, Step, Trace


@dataclass
class Replay:
    rows: list[Step]
    violation: Violation | None
    diverged: bool  # the schedule named a task that could not run: model changed


def replay(model: Model, trace: Trace, max_steps: int = DEFAULT_MAX_STEPS) -> Replay:
    """Re-run `trace.schedule` on `model`, recording every step."""
    recorder = Recorder()
    follow = FollowStrategy(trace.schedule)
    previous = greenlet.settrace(recorder.on_switch)
    try:
        outcome = run_schedule(model, follow, max_steps, recorder=recorder)
    finally:
        greenlet.settrace(previous)
    return Replay(recorder.close(), outcome.violation, follow.diverged)
