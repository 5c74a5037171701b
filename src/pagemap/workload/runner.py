"""The main job: processes write and read a file while the flusher evicts it,
and at the end every oracle of the design gets its verdict.

The verdicts are the oracle library's (oracles/): memory safety judges every
user access as it lands, from the mappings the workers made (the Machine's
access hook); coherence is the file's shadow, which every worker checks its
reads against; accounting and durability are asked once every process has
exited and the file is fsynced.  Only "locked pages" is this job's own: the
pages MAP_LOCKED brought in are still cached at the end."""

from __future__ import annotations

import os
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pagemap.hw.memory import PGMASK, PGSHIFT
from pagemap.kernel.proc import Proc
from pagemap.kernel.vfs import File
from pagemap.machine import Machine
from pagemap.oracles import Violation
from pagemap.oracles.accounting import no_leak, quiescent
from pagemap.oracles.coherence import Shadow
from pagemap.oracles.durability import nothing_lost_in_runs, size_kept
from pagemap.oracles.memory import MemorySafety
from pagemap.sync.core import Deadlock, StepBudgetExceeded
from pagemap.workload import data
from pagemap.workload.spec import Spec
from pagemap.workload.target import (
    HostTarget,
    ImageTarget,
    Target,
    copy_image,
    create_in_image,
    image_contents,
)
from pagemap.workload.worker import Worker

# Each oracle's key (in JSON) and the words a table shows for it.
ORACLES = {
    "coherence": "coherence",
    "memory_safety": "memory safety",
    "durability": "durability",
    "accounting": "accounting",
    "liveness": "liveness",
    "locked_pages": "locked pages",
    "filesystem": "filesystem (e2fsck)",  # an ext2 image's own oracle (--image)
}
EXTRA_ORACLES = ("filesystem",)  # only where the target asks for them
KEYS = {label: key for key, label in ORACLES.items()}  # an oracle family's key


@dataclass
class Verdict:
    name: str  # a key of ORACLES
    ok: bool
    detail: str

    @property
    def label(self) -> str:
        return ORACLES[self.name]


@dataclass
class Result:
    spec: Spec
    elapsed: float = 0.0
    ops_done: int = 0
    counters: dict[str, int | float] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.verdicts)


class Checks:
    """Problems found by each oracle, as sentences (capped per oracle)."""

    LIMIT = 20

    def __init__(self, extra: tuple[str, ...] = ()) -> None:
        names = [n for n in ORACLES if n not in EXTRA_ORACLES] + list(extra)
        self.found: dict[str, list[str]] = {name: [] for name in names}

    def add(self, oracle: str, problem: str) -> None:
        found = self.found[oracle]
        if len(found) < self.LIMIT:
            found.append(problem)

    def report(self, family: str, problem: str) -> None:
        """A problem an oracle of the library found (`family` as oracles/ names it)."""
        self.add(KEYS[family], problem)

    def violations(self, found: list[Violation]) -> None:
        for v in found:
            self.report(v.oracle, v.message)

    def verdicts(self) -> list[Verdict]:
        return [
            Verdict(name, not problems, "; ".join(problems) if problems else "holds")
            for name, problems in self.found.items()
        ]


def run_workload(spec: Spec, progress: Callable[[int], None] = lambda n: None) -> Result:
    """Run `spec` in a temp dir; `progress(n)` is told of every n operations done."""
    with tempfile.TemporaryDirectory(prefix="pagemap-run-") as tmp:
        if spec.image is not None:
            return _run_on_image(spec, tmp, progress)
        path = os.path.join(tmp, "data.bin")
        if spec.file is not None:
            size = data.copy(spec.file, path)
            spec = Spec.build(**{**spec.__dict__, "file_size": size})
            with open(path, "rb") as f:
                shadow = Shadow(f.read())
        else:
            # Computed, not held: a generated file of a gibibyte costs the
            # pages the run writes.
            generated = data.Generated(spec.file_size)
            generated.write_to(path)
            shadow = Shadow.of(spec.file_size, generated.read)
        machine = Machine(spec.cores, spec.memory, spec.executor, spec.seed, reclaim=spec.reclaim)
        return _run(spec, machine, HostTarget(machine, path), shadow, progress)


def _run_on_image(spec: Spec, tmp: str, progress: Callable[[int], None]) -> Result:
    """The job on /data.bin inside a copy of the image (see workload/target.py)."""
    assert spec.image is not None
    image = os.path.join(tmp, "image.img")
    copy_image(spec.image, image)
    existing = image_contents(image)
    if existing is not None:
        spec = Spec.build(**{**spec.__dict__, "file_size": len(existing)})
    else:
        existing = create_in_image(image, spec.file_size, spec.memory)
    machine = Machine(spec.cores, spec.memory, spec.executor, spec.seed, reclaim=spec.reclaim)
    fs = machine.mount(image, "rw")
    return _run(spec, machine, ImageTarget(machine, image, fs), Shadow(existing), progress)


def _run(
    spec: Spec,
    machine: Machine,
    target: Target,
    shadow: Shadow,
    progress: Callable[[int], None],
) -> Result:
    result = Result(spec)
    checks = Checks(target.oracles)
    file = target.file
    layout = spec.layout()
    procs = [machine.process() for _ in range(spec.procs)]
    flusher = machine.start_flusher(spec.flusher_period)
    memory = MemorySafety(machine, checks.report, lambda: _who(machine))
    coherence: list[str] = []
    per_worker = spec.ops // spec.procs
    workers = [
        Worker(
            w,
            procs[w],
            file,
            layout,
            shadow,
            spec.seed,
            per_worker + (w < spec.ops % spec.procs),
            progress,
            coherence,
            memory.mappings,
        )
        for w in range(spec.procs)
    ]
    machine.on_access = memory.access
    for w in workers:
        machine.spawn(w.run, core=w.wid % spec.cores, name=f"p{w.proc.pid}.worker")
    t0 = time.perf_counter()
    try:
        machine.run()
    except (Deadlock, StepBudgetExceeded) as exc:
        checks.add("liveness", str(exc))
    except Exception as exc:  # a task failed: report it as what it is
        checks.add("liveness", f"a task failed: {exc!r}")
    result.elapsed = time.perf_counter() - t0
    machine.on_access = None
    for problem in coherence:
        checks.add("coherence", problem)
    _check_locked(file, workers, checks)
    cached = file.mapping.nr_pages
    _finish(machine, procs, target, shadow, checks)
    result.ops_done = sum(sum(w.counts.values()) for w in workers)
    result.counters = _counters(machine, file, procs, flusher.stats.rounds, cached, result)
    result.verdicts = checks.verdicts()
    return result


def _who(machine: Machine) -> str:
    task = machine.current_task()
    return task.name if task is not None else "the job"


def _check_locked(file: File, workers: list[Worker], checks: Checks) -> None:
    for w in workers:
        # Only pages MAP_LOCKED brought in: one it could not populate (no
        # frame free at the time) is faulted in later, like any other.
        for index in w.locked_loaded:
            if not file.mapping.tree.lookup(index):
                checks.add("locked_pages", f"page {index}, mapped MAP_LOCKED, was evicted")


def _finish(
    machine: Machine, procs: list[Proc], target: Target, shadow: Shadow, checks: Checks
) -> None:
    """Unmap everything (passing on dirty bits), fsync, ask the accounting
    oracles, close, and ask the durability oracle of what the backing store
    holds against the shadow."""
    file = target.file
    try:
        for proc in procs:
            proc.exit()
        target.settle()
        file.fsync()
    except OSError as exc:
        checks.add("durability", f"writing back at the end failed: {exc}")
        return
    checks.violations(quiescent(machine))
    checks.violations(no_leak(machine))
    file.close()
    stored = target.read_back(checks.found)
    if stored is None:
        return
    name, size = file.mapping.name, shadow.size
    checks.violations(size_kept(name, stored.size, size))
    pages = (size + PGMASK) >> PGSHIFT
    checks.violations(
        nothing_lost_in_runs(
            name,
            file.mapping,
            pages,
            stored.pages,
            lambda first, n: shadow.expect(first << PGSHIFT, n << PGSHIFT).ljust(
                n << PGSHIFT, b"\0"
            ),
            size,
        )
    )


def _counters(
    machine: Machine, file: File, procs: list[Proc], rounds: int, cached: int, result: Result
) -> dict[str, int | float]:
    stats = file.mapping.stats
    loads = stats.hits + stats.misses
    counters: dict[str, int | float] = {
        "page_loads": loads,
        "cache_hits": stats.hits,
        "pages_read": stats.misses,
        "hit_ratio": round(stats.hits / loads, 4) if loads else 0.0,
        "writebacks": int(stats.writebacks),
        "pages_removed": stats.removed,
        "removal_passes": stats.removals,
        "flusher_rounds": rounds,
        "pages_cached_at_end": cached,
        "operations": result.ops_done,
        "ops_per_second": round(result.ops_done / result.elapsed, 1) if result.elapsed else 0.0,
    }
    for name, value in machine.mm_counters().items():
        counters[name] = value
    for name, value in machine.reclaim.summary().items():
        counters[name] = value
    counters["peak_resident_bytes"] = peak_resident()
    return counters


def peak_resident() -> int:
    """This process's peak resident set in bytes: what the run cost the host
    (VmHWM; getrusage's ru_maxrss where /proc is not there)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
