"""`pagemap check --mutants`: every mutant (check/mutants/) against the planned
units, and the table of which scenario kills it, how soon.

Rules: a mutant patches the kernel of the process it runs in, so with --jobs
each worker process runs one mutant at a time (run_mutant, the worker's
whole job); the table keeps MUTANTS' order.  Exit 1 if any mutant outside
EQUIVALENT_MUTANTS survives.  Ctrl-C and SIGTERM stop it with no table.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from pagemap.check.cli.common import OK, VIOLATION, _progress, _say, _why, plural
from pagemap.check.fanout import SerialEngine, Stop, Unit, explore
from pagemap.check.mutants.base import Mutant
from pagemap.check.workers import Pool, Progress, Stopped, WorkerFailed


def _mutants(console: Console, args: argparse.Namespace, units: list[Unit]) -> int:
    """Every mutant against the planned units: which scenario kills it, how soon.
    With --jobs, mutants run in worker processes, one at a time each."""
    from pagemap.check.mutants import EQUIVALENT_MUTANTS, MUTANTS, lookup_mutant

    chosen = [lookup_mutant(n) for n in args.mutant] or list(MUTANTS)
    jobs = min(args.jobs, len(chosen))
    t0 = time.perf_counter()
    stop = Stop()
    try:
        with _progress(
            console, "pagemap check --mutants", "running the scenarios against each mutant ..."
        ) as say:

            def told(done: int, total: int, index: int) -> None:
                say(
                    f"{chosen[index].name} run ({done} of {total}, "
                    f"{time.perf_counter() - t0:.1f} s)"
                )

            if jobs == 1:
                runs = []
                for i, mutant in enumerate(chosen):
                    runs.append(run_mutant(mutant.name, units))
                    told(i + 1, len(chosen), i)
            else:
                with stop.on_signals():
                    runs = _mutants_in_workers(chosen, units, jobs, told, stop)
    except Stopped as exc:
        _say(
            console,
            f"STOPPED by {_why(stop)}: {exc.done} of {plural(exc.total, 'mutant')} "
            f"run in {time.perf_counter() - t0:.1f} s; no table, the rest were not run",
        )
        return stop.exit_code
    table = Table(title="pagemap check --mutants")
    for col in ("mutant", "the rule it breaks", "killed by", "schedules", "seconds"):
        table.add_column(col, justify="right" if col in ("schedules", "seconds") else "left")
    survivors = []
    for mutant, run in zip(chosen, runs, strict=True):
        if run["scenario"] is not None:
            verdict = f"[green]{run['scenario']}[/green] ({run['oracle']})"
        elif mutant in EQUIVALENT_MUTANTS:
            verdict = "[yellow]survives: equivalent (see check/mutants/)[/yellow]"
        else:
            verdict = "[red]SURVIVES[/red]"
            survivors.append(mutant.name)
        table.add_row(
            mutant.name, mutant.broken, verdict, f"{run['schedules']:,}", f"{run['seconds']:.2f}"
        )
    console.print(table)
    if survivors:
        console.print(
            f"[red]{len(survivors)} of {plural(len(chosen), 'mutant')} "
            f"{'survives' if len(survivors) == 1 else 'survive'}[/red]: "
            f"{', '.join(survivors)}: no scenario run here breaks an oracle under them",
            soft_wrap=True,
        )
        return VIOLATION
    console.print(f"[green]every mutant is killed[/green] ({len(chosen)})")
    return OK


def run_mutant(name: str, units: Sequence[Unit]) -> dict[str, Any]:
    """Mutant `name` against `units`, in this process (run_against)."""
    from pagemap.check.mutants import lookup_mutant

    return run_against(lookup_mutant(name), units)


def run_against(
    mutant: Mutant, units: Sequence[Unit], time_limit: float | None = None
) -> dict[str, Any]:
    """`mutant` against `units`, in this process: the first scenario (in the
    plan's fixed order) whose oracle it breaks, and which oracle; the schedules
    and seconds that scenario took from its own start to the kill (the scenarios
    before it in the plan, which held, are not counted: a mutant is judged by how
    soon its killer finds it), or, for a survivor, those of the whole plan.
    `time_limit`: seconds after which the plan is stopped, the mutant a
    survivor of what ran (`limited`).  JSON, as a --mutants worker answers it."""
    stop = Stop()
    timer = threading.Timer(time_limit, stop.request) if time_limit is not None else None
    with mutant.applied():
        t0 = time.perf_counter()
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            results = explore(units, SerialEngine(), None, stop).summaries
        finally:
            if timer is not None:
                timer.cancel()
        seconds = time.perf_counter() - t0
    killer = next((r for r in results if r.trace is not None), None)
    trace = None if killer is None else killer.trace
    return {
        "scenario": None if killer is None else killer.scenario,
        "oracle": None if trace is None else trace.oracle,
        "message": None if trace is None else trace.message,
        "schedules": sum(r.schedules for r in results) if killer is None else killer.schedules,
        "seconds": seconds if killer is None else killer.seconds,
        "scenarios": sorted({r.scenario for r in results if r.schedules}),
        "limited": killer is None and stop.requested,
    }


# A --mutants worker (check/workers.py): each line names a mutant and the units to run.
_MUTANT_WORKER = """
from pagemap.check.cli.mutants import run_mutant
from pagemap.check.fanout import Unit
for line in sys.stdin:
    item = json.loads(line)
    units = [Unit.from_json(u) for u in item["units"]]
    answer(run_mutant(item["mutant"], units))
"""


def _mutants_in_workers(
    chosen: Sequence[Any], units: Sequence[Unit], jobs: int, told: Progress, stop: Stop
) -> list[dict[str, Any]]:
    plan = [u.to_json() for u in units]
    with Pool(_MUTANT_WORKER, [[] for _ in range(jobs)]) as pool:
        try:
            runs: list[dict[str, Any]] = pool.map(
                [{"mutant": m.name, "units": plan} for m in chosen], told, stop
            )
            pool.finish()
        except WorkerFailed as exc:
            raise RuntimeError(f"the mutants run failed: {exc}") from None
    return runs
