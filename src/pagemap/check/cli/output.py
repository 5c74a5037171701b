"""What `pagemap check` prints: the banner, the summary table, every
counterexample shrunk, written out and replayed (the first shown as a
timeline, a page each with --report), the --json document, and the verdict
line.

Rules: `conclude` is the end of every check and returns its exit code; a run
stopped by a signal writes nothing and ends with stopped_line.  The JSON
document follows check.schema.json (CHECK_SCHEMA).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from pagemap import __version__
from pagemap.check.cli.common import (
    CHECK_SCHEMA,
    OK,
    PORTFOLIO_PCT,
    UNIT_TIMEOUT,
    VIOLATION,
    _say,
    plural,
)
from pagemap.check.counterexample import renderable, replay_command, timeline_of, write_page
from pagemap.check.fanout import SPLIT
from pagemap.check.replay import Replay, replay
from pagemap.check.runner import DEFAULT_CAP, Model, Summary
from pagemap.check.shrink import shrink_trace
from pagemap.check.strategies import DEFAULT_BOUND, EXHAUSTIVE
from pagemap.check.trace import Trace


def banner(
    args: argparse.Namespace, names: Sequence[str], units: int, where: str | None = None
) -> str:
    """One line: what is explored, how, and where (`where`: the engine's name,
    "in this process", "in 2 worker processes", "on the Dask cluster at ...")."""
    bound = args.preemptions if args.preemptions is not None else DEFAULT_BOUND
    strategy = args.strategy
    if strategy is None:
        how = (
            f"a PCT pass of {plural(PORTFOLIO_PCT, 'schedule')} each, then DPOR with at most "
            f"{plural(bound, 'preemption')} to the end"
        )
    elif strategy in EXHAUSTIVE:
        how = f"{strategy.upper()} with at most {plural(bound, 'preemption')} " + (
            f"for {args.time:g} s each"
            if args.time is not None
            else f"to the end (at most {plural(args.budget or DEFAULT_CAP, 'schedule')} each)"
        )
    else:
        how = f"{strategy.upper()}, " + (
            f"for {args.time:g} s each"
            if args.time is not None
            else f"{plural(args.budget, 'schedule')} each"
        )
    jobs = where or (f"in {args.jobs} worker processes" if args.jobs > 1 else "in this process")
    return (
        f"pagemap check: {plural(len(names), 'scenario')}, {how}; {plural(units, 'unit')} of "
        f"work {jobs}, seed {args.seed}"
    )


def _print_timeouts(console: Console, summaries: Sequence[Summary]) -> None:
    for s in summaries:
        if s.timed_out:
            console.print(
                f"[yellow]{s.scenario}: {plural(s.timed_out, 'unit')} of work timed out[/yellow] "
                "(--unit-timeout); what they would have explored was not",
                soft_wrap=True,
            )


def _print_summary(console: Console, summaries: Sequence[Summary]) -> None:
    table = Table(title="pagemap check")
    cols = ("scenario", "strategy", "schedules", "traces", "covered", "steps/s", "verdict")
    for col in cols:
        table.add_column(
            col, justify="right" if col in ("schedules", "traces", "steps/s") else "left"
        )
    for s in summaries:
        strat = s.strategy + (f" ≤{s.bound}" if s.bound is not None else "")
        if s.extra:
            strat = " + ".join(f"{k} {v}" for k, v in s.extra.items()) + f", {strat}"
        verdict = "[green]holds[/green]" if s.trace is None else f"[red]{s.trace.oracle}[/red]"
        table.add_row(
            s.scenario,
            strat,
            f"{s.schedules:,}",
            f"{s.distinct:,}" if s.strategy == "dpor" else "",
            "yes" if s.exhaustive else "no",
            f"{s.steps_per_second:,.0f}",
            verdict,
        )
    console.print(table)


@dataclass
class Found:
    """A counterexample of the run, as written out."""

    summary: Summary
    trace: Trace
    path: Path
    result: Replay
    page: Path | None = None


def conclude(
    console: Console,
    args: argparse.Namespace,
    models: Mapping[str, Model],
    summaries: Sequence[Summary],
    seconds: float,
    stopped: int | None = None,
) -> int:
    """The summary table, every counterexample written out (the first shown as a
    timeline), the JSON document if asked, and the verdict line; the exit code.
    `stopped`: the run was cut short by a signal, whose exit code this is (130 for
    Ctrl-C, 143 for SIGTERM): what was explored is said, and nothing is written."""
    _print_summary(console, summaries)
    _print_timeouts(console, summaries)
    if stopped is not None:
        if args.json:
            doc = check_document(args, summaries, [], seconds)
            doc.update(ok=False, verdict="interrupted", exit_code=stopped)
            print(json.dumps(doc, indent=1))
        _say(console, stopped_line(summaries, seconds, stopped))
        return stopped
    found: list[Found] = []
    for s in summaries:
        if s.trace is not None:
            found.append(_write_out(args, models[s.scenario], s, s.trace))
    if found:
        _show_first(console, found[0])
    for f in found[1:]:
        _say(console, f"also {f.trace.oracle} in {f.trace.scenario}: trace written to {f.path}")
    if args.json:
        print(json.dumps(check_document(args, summaries, found, seconds), indent=1))
    _say(console, verdict_line(summaries, found, seconds))
    return VIOLATION if found else OK


def _write_out(args: argparse.Namespace, model: Model, summary: Summary, trace: Trace) -> Found:
    if not args.no_shrink:
        trace = shrink_trace(model, trace)
    if getattr(args, "mutant_name", None):
        trace.model = {**trace.model, "mutant": args.mutant_name}
    path = trace.save(args.traces)
    result = replay(model, trace, states=args.report is not None, explain=True)
    found = Found(summary, trace, path, result)
    if args.report is not None:
        directory = Path(args.report)
        directory.mkdir(parents=True, exist_ok=True)
        timeline = timeline_of(trace, result, replay_command(path))
        found.page = write_page(timeline, directory / (path.stem + ".html"))
    return found


def _show_first(console: Console, f: Found) -> None:
    timeline = timeline_of(f.trace, f.result, replay_command(f.path))
    console.print(renderable(timeline, console.width))
    _say(console, f"trace written to {f.path}")
    if f.page is not None:
        _say(console, f"timeline page written to {f.page}")


def verdict_line(summaries: Sequence[Summary], found: Sequence[Found], seconds: float) -> str:
    """The last line of `pagemap check`, as `pagemap run` ends with one."""
    schedules = sum(s.schedules for s in summaries)
    n = len(summaries)
    explored = f"{plural(schedules, 'schedule')} of {plural(n, 'scenario')} in {seconds:.1f} s"
    if not found:
        covered = sum(s.exhaustive for s in summaries)
        return f"OK: every oracle holds: {explored}; {covered} of {n} covered to the end"
    first = found[0]
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    return (
        f"FAILED: {first.trace.oracle} in {first.trace.scenario}{more} after {explored}; "
        f"replay it: {replay_command(first.path)}"
    )


def stopped_line(summaries: Sequence[Summary], seconds: float, code: int) -> str:
    """The last line of a `pagemap check` cut short by Ctrl-C or SIGTERM."""
    schedules = sum(s.schedules for s in summaries)
    why = "Ctrl-C" if code == 130 else "SIGTERM" if code == 143 else "a signal"
    return (
        f"STOPPED by {why}: {plural(schedules, 'schedule')} of "
        f"{plural(len(summaries), 'scenario')} explored in {seconds:.1f} s, no violation "
        "among them; the rest was not explored"
    )


def check_document(
    args: argparse.Namespace,
    summaries: Sequence[Summary],
    found: Sequence[Found],
    seconds: float,
) -> dict[str, Any]:
    """`check --json`: the run as check.schema.json describes it."""
    return {
        "schema": CHECK_SCHEMA,
        "command": "check",
        "pagemap": __version__,
        "ok": not found,
        "verdict": "violation" if found else "holds",
        "exit_code": VIOLATION if found else OK,
        "seconds": round(seconds, 3),
        "settings": {
            "strategy": args.strategy or "portfolio",
            "budget": args.budget,
            "time": args.time,
            "preemptions": args.preemptions,
            "seed": args.seed,
            "depth": args.depth,
            "jobs": args.jobs,
            "max_steps": args.max_steps,
            "scheduler": getattr(args, "scheduler", None),
            "split": getattr(args, "split", SPLIT),
            "unit_timeout": getattr(args, "unit_timeout", UNIT_TIMEOUT),
        },
        "scenarios": [_scenario_json(s) for s in summaries],
        "counterexamples": [_found_json(f) for f in found],
    }


def _scenario_json(s: Summary) -> dict[str, Any]:
    return {
        "scenario": s.scenario,
        "params": dict(s.params),
        "strategy": s.strategy,
        "bound": s.bound,
        "earlier_phases": dict(s.extra),
        "schedules": s.schedules,
        "distinct": s.distinct,
        "redundant": s.redundant,
        "timed_out_units": s.timed_out,
        "exhaustive": s.exhaustive,
        "steps": s.steps,
        "seconds": round(s.seconds, 3),
        "verdict": "holds" if s.trace is None else "violation",
        "oracle": None if s.trace is None else s.trace.oracle,
    }


def _found_json(f: Found) -> dict[str, Any]:
    return {
        "scenario": f.trace.scenario,
        "params": dict(f.trace.params),
        "oracle": f.trace.oracle,
        "message": f.trace.message,
        "steps": f.trace.steps,
        "preemptions": f.trace.preemptions,
        "trace": str(f.path),
        "replay_command": replay_command(f.path),
        "report": None if f.page is None else str(f.page),
    }
