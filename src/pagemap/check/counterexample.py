"""A replayed trace as people read it: the Timeline of report/, built and rendered.

Rules: `timeline_of` only reads a Replay (check/replay.py) and its Trace; the
report package draws what it returns, as text for a terminal (narrow from 80
columns) or as a page for a browser.  The title is in words (the scenario and its
parameters, never a Python dict); the verdict carries the command that replays
the trace, when there is one.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import RenderableType

from pagemap.check.replay import STATE_ROWS, Replay
from pagemap.check.report.model import Timeline, Verdict
from pagemap.check.report.text import render_text, timeline_renderable
from pagemap.check.report.timeline import render_html
from pagemap.check.trace import Trace

NOT_RECORDED = "(state)"  # the state entry of rows past STATE_ROWS


def title_of(trace: Trace, what: str = "a counterexample") -> str:
    """ "store-remove, with pages=1 and rounds=2: a counterexample"."""
    params = [f"{k}={v}" for k, v in trace.params.items()]
    said = ""
    if params:
        said = ", with " + (
            params[0] if len(params) == 1 else ", ".join(params[:-1]) + " and " + params[-1]
        )
    return f"{trace.scenario}{said}: {what}"


def summary_of(trace: Trace, result: Replay) -> str:
    """How the schedule was found and how long it is, in one line."""
    parts = [
        f"Found by {trace.strategy} seed {trace.seed}, schedule {trace.schedule_index}"
        + (
            f", at most {_count(trace.preemption_bound, 'preemption')}"
            if trace.preemption_bound
            else ""
        )
    ]
    if trace.shrunk_from:
        parts.append(
            f"shrunk from {_count(trace.shrunk_from.get('steps', 0), 'step')} and "
            f"{_count(trace.shrunk_from.get('preemptions', 0), 'preemption')}"
        )
    if result.cycle is not None:
        prefix, period = result.cycle
        repeat = "step repeats" if period == 1 else f"{period} steps repeat"
        parts.append(
            f"a livelock: after step {prefix} the same {repeat} until the budget "
            f"of {_count(trace.max_steps, 'step')} runs out; shown to the end of one turn"
        )
    return "; ".join(parts)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun if n == 1 else noun + 's'}"


def timeline_of(
    trace: Trace, result: Replay, replay_command: str = "", what: str = "a counterexample"
) -> Timeline:
    """The Timeline of a replay of `trace`."""
    rows = result.rows
    recorded = [r for r in rows if r.state]
    if recorded and len(recorded) < len(rows):
        last = dict(recorded[-1].state)
        last[NOT_RECORDED] = f"not recorded after step {recorded[-1].step}"
        for r in rows[len(recorded) :]:
            r.state = last
    v = result.violation
    return Timeline(
        title=title_of(trace, what),
        cores=trace.cores,
        tasks=list(result.tasks),
        rows=rows,
        verdict=None if v is None else Verdict(v.oracle, v.message, replay_command),
        summary=summary_of(trace, result),
        initial=dict(result.initial),
        race=result.race,
    )


def renderable(timeline: Timeline, width: int) -> RenderableType:
    """For a rich Console `width` columns wide (colours as the console decides)."""
    return timeline_renderable(timeline, max(width, 40))


def as_text(timeline: Timeline, width: int) -> str:
    """Plain text `width` columns wide (no line longer)."""
    return render_text(timeline, max(width, 40))


def write_page(timeline: Timeline, path: Path) -> Path:
    """The self-contained page of `timeline`, written to `path`."""
    path.write_text(render_html(timeline), encoding="utf-8")
    return path


def replay_command(path: Path | str) -> str:
    return f"pagemap replay {path}"


__all__ = [
    "NOT_RECORDED",
    "STATE_ROWS",
    "as_text",
    "renderable",
    "replay_command",
    "summary_of",
    "timeline_of",
    "title_of",
    "write_page",
]
