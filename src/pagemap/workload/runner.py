"""The main job: processes write and read a file while the flusher evicts it,
and at the end every oracle of the design gets its verdict."""

from __future__ import annotations

import os
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pagemap.hw.memory import PGSIZE
from pagemap.kernel.proc import Proc
from pagemap.kernel.vfs import File
from pagemap.machine import Machine
from pagemap.sync.core import Deadlock, StepBudgetExceeded
from pagemap.workload import data
from pagemap.workload.spec import LOCKED_PAGES, Spec
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
        else:
            data.generate(path, spec.file_size)
        with open(path, "rb") as f:
            shadow = bytearray(f.read())
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
    return _run(spec, machine, ImageTarget(machine, image, fs), bytearray(existing), progress)


def _run(
    spec: Spec,
    machine: Machine,
    target: Target,
    shadow: bytearray,
    progress: Callable[[int], None],
) -> Result:
    result = Result(spec)
    checks = Checks(target.oracles)
    file = target.file
    layout = spec.layout()
    procs = [machine.process() for _ in range(spec.procs)]
    flusher = machine.start_flusher(spec.flusher_period)
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
        )
        for w in range(spec.procs)
    ]
    machine.on_access = _memory_safety_hook(machine, file, workers, checks)
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


def _memory_safety_hook(
    machine: Machine, file: File, workers: list[Worker], checks: Checks
) -> Callable[[object, int, int, bool], None]:
    """Every user access must land in a live frame that caches the page the
    address maps: never a free frame, never another page's."""
    alloc = machine.allocator
    pm = file.mapping
    size = file.size
    shared = {id(w.proc): w.base for w in workers}
    locked = {id(w.proc): (w.locked_base, w.lo) for w in workers}

    def hook(proc: object, va: int, ppn: int, write: bool) -> None:
        if alloc.is_free(ppn):
            checks.add(
                "memory_safety", f"{'store' if write else 'load'} at {va:#x} hit free frame {ppn}"
            )
            return
        base = shared.get(id(proc))
        if base is None:
            return
        if base <= va < base + size:
            index = (va - base) // PGSIZE
        else:
            lbase, lo = locked[id(proc)]
            if not lbase <= va < lbase + LOCKED_PAGES * PGSIZE:
                return  # the private window: a private copy, or the cached page
            index = (va - lbase + lo) // PGSIZE
        page = alloc.pages[ppn]
        if page.mapping is not pm or page.index != index:
            checks.add(
                "memory_safety",
                f"{'store' if write else 'load'} at {va:#x} (page {index}) landed in frame {ppn}, "
                f"which caches page {page.index} of {page.mapping}",
            )

    return hook


def _check_locked(file: File, workers: list[Worker], checks: Checks) -> None:
    for w in workers:
        # Only pages MAP_LOCKED brought in: one it could not populate (no
        # frame free at the time) is faulted in later, like any other.
        for index in w.locked_loaded:
            if not file.mapping.tree.lookup(index):
                checks.add("locked_pages", f"page {index}, mapped MAP_LOCKED, was evicted")


def _finish(
    machine: Machine, procs: list[Proc], target: Target, shadow: bytearray, checks: Checks
) -> None:
    """Unmap everything (passing on dirty bits), fsync, check the accounting,
    close, and compare what the backing store holds with the shadow."""
    file = target.file
    try:
        for proc in procs:
            proc.exit()
        target.settle()
        file.fsync()
    except OSError as exc:
        checks.add("durability", f"writing back at the end failed: {exc}")
        return
    for problem in machine.check_quiescent():
        checks.add("accounting", problem)
    cached = sum(pm.nr_pages for pm in machine.page_maps)
    if machine.allocator.nr_free + cached != machine.allocator.nr_frames - 1:
        checks.add(
            "accounting",
            f"{machine.allocator.nr_frames - 1 - machine.allocator.nr_free - cached}"
            " frames are neither free nor cached after every process exited",
        )
    file.close()
    host = target.read_back(checks.found)
    if host is None:
        return
    if host != bytes(shadow):
        if len(host) != len(shadow):
            checks.add("durability", f"the file has {len(host)} bytes, {len(shadow)} were written")
        else:
            bad = next(i for i in range(len(host)) if host[i] != shadow[i])
            checks.add(
                "durability",
                f"after fsync the file differs from every write applied in "
                f"order, first at offset {bad:#x}",
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
