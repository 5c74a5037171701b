"""`pagemap run`: the main job (see workload/spec.py and workload/runner.py)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pagemap.kernel.policy import KERNEL_DEFAULT, POLICIES
from pagemap.workload.runner import Result, run_workload
from pagemap.workload.spec import Spec


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "run",
        help="processes map, write and read a file while the flusher evicts it; "
        "every oracle is checked at the end",
        description="Several processes map a file (shared, private and locked mappings) and "
        "write and read it through their mappings and through pread/pwrite, while the "
        "flusher evicts pages under memory pressure.  At the end every oracle gets a "
        "verdict: coherence, memory safety, durability, accounting, liveness, locked "
        "pages.  Exit 0 only if all hold.",
    )
    p.add_argument(
        "--executor",
        choices=("threads", "sim"),
        default="threads",
        help="OS threads (default) or the deterministic scheduler",
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the workload (and of the sim)")
    p.add_argument("--cores", type=int, default=4, help="cores (default 4)")
    p.add_argument("--memory", default="64MiB", help="memory for page frames (default 64MiB)")
    p.add_argument(
        "--file-size",
        default="96MiB",
        help="size of the generated file (default 96MiB, more than --memory)",
    )
    p.add_argument("--procs", type=int, default=4, help="processes, one worker each (default 4)")
    p.add_argument("--ops", type=int, default=20_000, help="operations in all (default 20000)")
    p.add_argument(
        "--file",
        help="run on a copy of this file instead of a generated one "
        "(the file itself is never modified)",
    )
    p.add_argument(
        "--flusher-period",
        type=float,
        default=0.01,
        help="seconds between flusher rounds (virtual under sim; default 0.01)",
    )
    p.add_argument(
        "--reclaim",
        default=KERNEL_DEFAULT,
        choices=list(POLICIES),
        help=f"the replacement policy reclaim runs (default {KERNEL_DEFAULT})",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    spec = Spec.build(
        executor=args.executor,
        seed=args.seed,
        cores=args.cores,
        memory=args.memory,
        file_size=args.file_size,
        procs=args.procs,
        ops=args.ops,
        file=args.file,
        flusher_period=args.flusher_period,
        reclaim=args.reclaim,
    )
    if args.json:
        result = run_workload(spec)
        print(json.dumps(as_json(result), indent=2))
        return 0 if result.ok else 1
    console = Console()
    console.print(
        f"pagemap run: {spec.procs} processes, {spec.ops} operations, {spec.cores} cores, "
        f"{_size(spec.memory)} of frames, a {_size(spec.file_size)} file, "
        f"executor {spec.executor}, seed {spec.seed}, reclaim policy {spec.reclaim}"
    )
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("operations", total=spec.ops)
        result = run_workload(spec, lambda n: bar.advance(task, n))
    console.print(counters_table(result))
    console.print(verdicts_table(result))
    if result.ok:
        console.print("[green]OK[/green]: every oracle holds")
        return 0
    console.print("[red]FAILED[/red]: see the verdicts above")
    return 1


def _size(nbytes: int) -> str:
    return f"{nbytes >> 20} MiB" if nbytes >= 1 << 20 else f"{nbytes >> 10} KiB"


def counters_table(result: Result) -> Table:
    table = Table(title=f"counters ({result.elapsed:.2f} s)")
    table.add_column("counter")
    table.add_column("value", justify="right")
    for name, value in result.counters.items():
        if isinstance(value, int):
            shown = f"{value:,}"
        else:
            shown = f"{value:.3f}" if value < 10 else f"{value:,.1f}"
        table.add_row(name, shown)
    return table


def verdicts_table(result: Result) -> Table:
    table = Table(title="oracles")
    table.add_column("oracle")
    table.add_column("verdict")
    table.add_column("detail", overflow="fold")
    for v in result.verdicts:
        table.add_row(
            v.name,
            "[green]holds[/green]" if v.ok else "[red]VIOLATED[/red]",
            "" if v.ok else v.detail,
        )
    return table


def as_json(result: Result) -> dict[str, Any]:
    return {
        "ok": result.ok,
        "spec": result.spec.__dict__,
        "elapsed_seconds": result.elapsed,
        "counters": result.counters,
        "oracles": {v.name: {"ok": v.ok, "detail": v.detail} for v in result.verdicts},
    }
