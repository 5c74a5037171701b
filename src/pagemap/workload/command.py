"""`pagemap run`: the main job (see workload/spec.py and workload/runner.py).

Rules: every argument is checked before any work starts (a bad one is one line and
exit 2); the run's temp files (the data file and its copy) live in one temp
directory that is removed however the run ends: normally, on an error, on Ctrl-C
(exit 130) or on SIGTERM (exit 143, what a CI timeout sends).  `--json` prints one
document (run.schema.json in check/schemas/) and nothing else on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from types import FrameType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pagemap import __version__, e2fsprogs
from pagemap.hw.memory import PGSIZE
from pagemap.kernel.policy import KERNEL_DEFAULT, POLICIES
from pagemap.options import format_size, host_memory, seconds, size, whole
from pagemap.workload.runner import Result, run_workload
from pagemap.workload.spec import Spec
from pagemap.workload.target import IMAGE_FILE

RUN_SCHEMA = 1  # the version of run.schema.json that `--json` follows
TERMINATED = 143  # 128 + SIGTERM, as a shell reports it

# What the counters table calls each counter (the JSON uses the keys).
COUNTER_LABELS = {
    "page_loads": "page loads",
    "cache_hits": "cache hits",
    "pages_read": "pages read (misses)",
    "hit_ratio": "hit ratio",
    "writebacks": "writebacks",
    "pages_removed": "pages removed",
    "removal_passes": "removal passes",
    "flusher_rounds": "flusher rounds",
    "pages_cached_at_end": "pages cached at the end",
    "operations": "operations",
    "ops_per_second": "ops per second",
    "page_faults_minor": "page faults, minor",
    "page_faults_major": "page faults, major",
    "tlb_shootdowns": "TLB shootdowns",
    "reclaim_rounds": "reclaim rounds",
    "pages_scanned_by_reclaim": "pages scanned by reclaim",
    "pages_found_referenced": "pages found referenced",
    "pages_reclaimed": "pages reclaimed",
    "direct_reclaims": "direct reclaims",
    "peak_resident_bytes": "peak resident memory (bytes)",
}


class Terminated(SystemExit):
    """SIGTERM arrived.  A SystemExit, so that the SimExecutor lets it through a
    task (it never takes one for a task's failure) and every `with` unwinds."""

    def __init__(self) -> None:
        super().__init__(TERMINATED)


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
    memory = host_memory() or None
    p.add_argument(
        "--executor",
        choices=("threads", "sim"),
        default="threads",
        help="OS threads (default) or the deterministic scheduler",
    )
    p.add_argument("--seed", type=whole(0), default=1, help="seed of the workload (and of the sim)")
    p.add_argument("--cores", type=whole(1, 256), default=4, help="cores (default 4)")
    p.add_argument(
        "--memory",
        type=size(64 * PGSIZE, memory, "this machine's memory"),
        default="64MiB",
        help="memory for page frames (default 64MiB)",
    )
    p.add_argument(
        "--file-size",
        type=size(1, memory, "this machine's memory"),
        default="96MiB",
        help="size of the generated file (default 96MiB, more than --memory)",
    )
    p.add_argument(
        "--procs",
        type=whole(1, 1024),
        default=4,
        help="processes, one worker each (default 4)",
    )
    p.add_argument("--ops", type=whole(0), default=20_000, help="operations in all (default 20000)")
    p.add_argument(
        "--file",
        help="run on a copy of this regular file instead of a generated one "
        "(the file itself is never modified)",
    )
    p.add_argument(
        "--image",
        help="run on /data.bin inside a copy of this ext2 image (created there if "
        "missing; the image itself is never modified); e2fsck must find the copy "
        "clean afterwards",
    )
    p.add_argument(
        "--flusher-period",
        type=seconds(0.000001, 3600),
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
        image=args.image,
    )
    in_image = _size_in_image(spec)
    _check_room_for_image(spec, in_image)
    try:
        with _sigterm_unwinds():
            if args.json:
                result = run_workload(spec)
                print(json.dumps(as_json(result), indent=2))
                return 0 if result.ok else 1
            return _run_with_display(spec, in_image)
    except Terminated:
        print("pagemap run: terminated (SIGTERM); its temp files are removed", file=sys.stderr)
        return TERMINATED


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """While the run goes on, SIGTERM raises Terminated in the main thread, so the
    temp directory's `with` removes it, as Ctrl-C's KeyboardInterrupt does
    (test_sigterm_leaves_no_temp_files)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_with_display(spec: Spec, in_image: int | None) -> int:
    console = Console()
    console.print(banner(spec, in_image), soft_wrap=True)
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
    failed = ", ".join(v.label for v in result.verdicts if not v.ok)
    console.print(f"[red]FAILED[/red]: {failed} (see the verdicts above)")
    return 1


def banner(spec: Spec, in_image: int | None = None) -> str:
    """One line saying what runs, with the sizes as they are (a user's file is
    counted at its own size; `in_image`: the size of the file the image holds,
    None if it holds none and one of --file-size is made there)."""
    size = format_size(spec.file_size)
    if spec.image is not None and in_image is not None:
        source = f"{IMAGE_FILE} of {format_size(in_image)} in a copy of {spec.image}"
    elif spec.image is not None:
        source = f"a generated file of {size}, made as {IMAGE_FILE} in a copy of {spec.image}"
    elif spec.file is not None:
        source = f"a copy of {spec.file} of {size}"
    else:
        source = f"a generated file of {size}"
    return (
        f"pagemap run: {_count(spec.procs, 'process', 'processes')}, "
        f"{_count(spec.ops, 'operation')}, {_count(spec.cores, 'core')}, "
        f"{format_size(spec.memory)} of frames, {source}, "
        f"executor {spec.executor}, seed {spec.seed}, reclaim policy {spec.reclaim}"
    )


def _count(n: int, noun: str, nouns: str | None = None) -> str:
    return f"{n:,} {noun if n == 1 else nouns or noun + 's'}"


def _size_in_image(spec: Spec) -> int | None:
    """The size of the job's file in --image's image, read (with debugfs, which
    only reads) before the copy is made; None without an image or that file.
    Only a regular file is read here: on a FIFO or a device debugfs would wait
    or read without end."""
    if spec.image is None or not os.path.isfile(spec.image):
        return None
    name = IMAGE_FILE.lstrip("/")
    return next((e.size for e in e2fsprogs.ls(spec.image, "/") if e.name == name), None)


def _check_room_for_image(spec: Spec, in_image: int | None) -> None:
    """ValueError, before the copy, if the temp directory's filesystem cannot
    hold the copy of --image: its allocated blocks (holes stay holes) and the
    job's file, which the run may fill (or make), up to the image's own size.
    Else the copy or the run would fail on ENOSPC part way, naming the copy."""
    if spec.image is None or not os.path.isfile(spec.image):
        return
    st = os.stat(spec.image)
    file_size = in_image if in_image is not None else spec.file_size
    need = min(st.st_size, st.st_blocks * 512 + file_size)
    tmp = tempfile.gettempdir()
    fs = os.statvfs(tmp)
    free = fs.f_bavail * fs.f_frsize
    if need > free:
        raise ValueError(
            f"--image {spec.image}: its copy may need {format_size(need)} in {tmp}, which "
            f"has {format_size(free)} free; free some, or set TMPDIR to a roomier directory"
        )


def counters_table(result: Result) -> Table:
    table = Table(title=f"counters ({result.elapsed:.2f} s)")
    table.add_column("counter")
    table.add_column("value", justify="right")
    for key, value in result.counters.items():
        if isinstance(value, int):
            shown = f"{value:,}"
        else:
            shown = f"{value:.3f}" if value < 10 else f"{value:,.1f}"
        table.add_row(COUNTER_LABELS.get(key, key), shown)
    return table


def verdicts_table(result: Result) -> Table:
    table = Table(title="oracles")
    table.add_column("oracle")
    table.add_column("verdict")
    table.add_column("detail", overflow="fold")
    for v in result.verdicts:
        table.add_row(
            v.label,
            "[green]holds[/green]" if v.ok else "[red]VIOLATED[/red]",
            "" if v.ok else v.detail,
        )
    return table


def as_json(result: Result) -> dict[str, Any]:
    """The run as run.schema.json describes it: snake_case keys throughout."""
    spec = result.spec
    return {
        "schema": RUN_SCHEMA,
        "command": "run",
        "pagemap": __version__,
        "ok": result.ok,
        "verdict": "holds" if result.ok else "violation",
        "spec": {
            "executor": spec.executor,
            "seed": spec.seed,
            "cores": spec.cores,
            "memory": spec.memory,
            "file_size": spec.file_size,
            "procs": spec.procs,
            "ops": spec.ops,
            "file": spec.file,
            "flusher_period": spec.flusher_period,
            "reclaim": spec.reclaim,
            "image": spec.image,
        },
        "elapsed_seconds": result.elapsed,
        "counters": dict(result.counters),
        "oracles": {v.name: {"ok": v.ok, "detail": v.detail} for v in result.verdicts},
    }
