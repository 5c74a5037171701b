"""`pagemap check --known`: Linux's published page-cache races
(check/scenarios/known/), each run with its fix off (found) and on (holds),
as a table, --json or --markdown.

Rules: each row runs its own way (fix=0 and fix=1, the portfolio and DPOR),
so the options that choose a strategy, a plan or a place are refused with it.
Exit 0 only if every row is as expected.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from rich.console import Console
from rich.table import Table

from pagemap import __version__
from pagemap.check.cli.common import OK, VIOLATION, _say, plural
from pagemap.check.strategies import DEFAULT_BOUND


def _known_bugs(console: Console, args: argparse.Namespace) -> int:
    """`check --known`: every zoo row (or the named ones) with the fix off and on,
    a table of them, and exit 0 only if every row is as expected."""
    from pagemap.check.scenarios.known import BUGS
    from pagemap.check.scenarios.known.table import BUDGET, markdown, run_row

    others = [
        option
        for option, given in (
            ("--mutants", args.mutants),
            ("--coverage", args.coverage),
            ("--strategy", args.strategy is not None),
            ("--time", args.time is not None),
            ("--report", args.report is not None),
            ("--scheduler", args.scheduler is not None),
            ("-p", bool(args.param)),
        )
        if given
    ]
    if others:
        raise ValueError(
            f"--known runs each row its own way (fix=0 and fix=1, the portfolio and DPOR); "
            f"{', '.join(others)} cannot go with it"
        )
    if args.json and args.markdown:
        raise ValueError("give --json or --markdown, not both: each is the whole of stdout")
    names = list(args.scenarios)
    known_names = [b.scenario for b in BUGS]
    for name in names:
        if name not in known_names:
            raise ValueError(f"{name!r} is not a known bug (known: {', '.join(known_names)})")
    bugs = [b for b in BUGS if not names or b.scenario in names]
    budget = args.budget if args.budget is not None else BUDGET
    # With --json or --markdown, stdout carries the document alone.
    wide = None if sys.stderr.isatty() else 160
    say = Console(stderr=True, width=wide) if args.json or args.markdown else console
    say.print(
        f"pagemap check --known: {plural(len(bugs), 'bug')}, each with its fix off (PCT, "
        f"then DPOR with at most {DEFAULT_BOUND} preemptions, {budget:,} schedules at most) "
        f"and on (DPOR with at most {DEFAULT_BOUND} preemptions, to the end)"
    )
    t0 = time.perf_counter()
    rows = []
    for bug in bugs:
        row = run_row(bug, budget)
        rows.append(row)
        if not sys.stderr.isatty() or args.json or args.markdown:
            print(
                f"{bug.scenario}: {'as expected' if row.expected else 'NOT as expected'}",
                file=sys.stderr,
            )
    seconds = time.perf_counter() - t0
    table = Table(title="known bugs")
    for column in ("bug", "commit", "fix off", "oracle", "fix on", "witness"):
        table.add_column(column)
    for r in rows:
        off = (
            f"found in {plural(r.off_schedules, 'schedule')}, {r.off_seconds:.2f} s; "
            f"{plural(r.trace.steps, 'step')} shrunk"
            if r.trace is not None
            else f"not found in {plural(r.off_schedules, 'schedule')}"
        )
        on = f"{r.verdict()}: {plural(r.on_schedules, 'schedule')}, bound {r.bound}"
        witness = r.witness.describe() if r.witness is not None else "none"
        table.add_row(
            r.bug.scenario, f"{r.bug.commit} ({r.bug.year})", off, r.oracle or "-", on, witness
        )
    say.print(table)
    for r in rows:
        for problem in r.problems:
            say.print(f"{r.bug.scenario}: {problem}")
    good = all(r.expected for r in rows)
    wrong = [r.bug.scenario for r in rows if not r.expected]
    line = (
        f"OK: every known bug is found with its fix off and holds with it on, with a "
        f"witness: {plural(len(rows), 'bug')} in {seconds:.1f} s"
        if good
        else f"FAILED: {plural(len(wrong), 'row')} not as expected ({', '.join(wrong)}) "
        f"in {seconds:.1f} s"
    )
    if args.json:
        doc = {
            "schema": 1,
            "command": "check --known",
            "pagemap": __version__,
            "budget": budget,
            "seconds": round(seconds, 3),
            "expected": good,
            "rows": [r.to_json() for r in rows],
        }
        print(json.dumps(doc, indent=1))
    elif args.markdown:
        print(markdown(rows), end="")
    _say(say, line)
    return OK if good else VIOLATION
