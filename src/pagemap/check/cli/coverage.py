"""`pagemap check --coverage`: the scenarios under branch coverage
(check/coverage.py), the kernel lines and branches none reaches, and the
functions none races.

Rules: it runs in --jobs worker processes here, never on a cluster; exit 1
on a violation, or when a line not listed in unreached.txt is not reached.
Ctrl-C and SIGTERM stop it with its temp directory and workers gone.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from pagemap.check.cli.common import OK, VIOLATION, _progress, _say, _why, plural
from pagemap.check.fanout import Stop, Unit
from pagemap.check.workers import Stopped

if TYPE_CHECKING:
    from pagemap.check.coverage import CoverageReport


def _race_table(console: Console, report: CoverageReport) -> None:
    """Per kernel function that takes points: its steps, the races it was in."""
    census = report.races
    table = Table(title="races reached (DPOR, 1 preemption, every scenario)")
    for col in ("function", "steps", "races", "verdict"):
        table.add_column(col, justify="right" if col in ("steps", "races") else "left")
    for f in sorted(census.steps):
        raced = census.raced[f]
        if raced:
            verdict = "raced"
        elif f in report.race_listed:
            verdict = f"[yellow]not raced[/yellow]: {report.race_listed[f]}"
        else:
            verdict = "[red]NOT RACED[/red]"
        table.add_row(f, f"{census.steps[f]:,}", f"{raced:,}", verdict)
    console.print(table)
    raced = sum(1 for f in census.steps if census.raced[f])
    console.print(
        f"scenarios race {raced} of {plural(len(census.steps), 'kernel function')} that take "
        f"scheduling points; {plural(len(report.unraced), 'function')} not raced and not "
        "listed in unreached.txt",
        soft_wrap=True,
    )


def _coverage(console: Console, args: argparse.Namespace, units: list[Unit]) -> int:
    """The scenarios under branch coverage, in --jobs worker processes; Ctrl-C and
    SIGTERM stop it (130, 143) with its temp directory and workers gone."""
    from pagemap.check.coverage import default_exclusions, groups, measure

    total = len(groups(units))
    jobs = min(args.jobs, total)
    _say(
        console,
        f"pagemap check --coverage: {plural(total, 'scenario')}, "
        f"{plural(len(units), 'unit')} of work under branch coverage in "
        f"{plural(jobs, 'worker process', 'worker processes')}",
    )
    stop = Stop()
    t0 = time.perf_counter()
    try:
        with (
            stop.on_signals(),
            _progress(
                console, "pagemap check --coverage", "running the scenarios under coverage ..."
            ) as say,
        ):

            def told(done: int, total: int, name: str) -> None:
                say(f"{name} measured ({done} of {total}, {time.perf_counter() - t0:.1f} s)")

            report = measure(units, default_exclusions(), jobs, told, stop)
    except Stopped as exc:
        _say(
            console,
            f"STOPPED by {_why(stop)}: {exc.done} of {plural(exc.total, 'scenario')} measured "
            f"in {time.perf_counter() - t0:.1f} s; no coverage reported",
        )
        return stop.exit_code
    table = Table(title="scenario coverage of kernel/ and hw/")
    for col in ("file", "lines", "branches", "not reached (line, or line->line)"):
        table.add_column(col, justify="right" if col in ("lines", "branches") else "left")
    for f in report.files:
        lines = f.statements - f.listed_lines
        branches = f.branches - f.listed_branches
        missing = [str(n) for n in f.missing_lines] + [f"{a}->{b}" for a, b in f.missing_branches]
        table.add_row(
            f.path,
            f"{lines - len(f.missing_lines)}/{lines}",
            f"{branches - len(f.missing_branches)}/{branches}",
            ", ".join(missing),
        )
    console.print(table)
    for entry in report.stale:
        console.print(
            f"[yellow]unreached.txt lists a line that is reached or gone:[/yellow] {entry}"
        )
    reached, total = report.reached
    console.print(
        f"scenarios reach {reached}/{total} lines and branches of kernel/ and hw/ "
        f"({100 * reached / max(total, 1):.1f}%) not listed as unreachable",
        soft_wrap=True,
    )
    _race_table(console, report)
    for message in report.violations:
        console.print(f"[red]VIOLATION[/red] {message} (run pagemap check for the trace)")
    if report.violations:
        return VIOLATION
    return OK if report.complete else VIOLATION
