"""`pagemap run`: operations per second against the same work on Linux, its
cache hit ratio before and after reclaim had a policy, and what it costs the
host in memory.

- ops/s: the baseline runs the very same Worker (the same seeded mix of
  stores, loads, preads, pwrites and msyncs) against the host kernel through
  Python's mmap and os modules, on the same generated file; there,
  munmap/mprotect of a window are no-ops, since Python's mmap cannot unmap or
  protect part of a map.  Both sides have the same durability: neither
  flushes to disk.  Ours: msync writes the pages back to the host file's page
  cache (pwrite, no fsync).  Linux's: its stores are in its page cache
  already, and its msync is MS_ASYNC, which Linux makes a no-op (Python's
  mmap.flush is MS_SYNC, a write to disk, which made the baseline measure
  the disk).  Linux, ours under threads and ours under the sim run in
  paired rounds (the harness's rule: each figure the median of its rounds,
  each ratio the median of the per-round ratios).
- hit ratio: cache hits / page-cache lookups of the main job under the
  deterministic executor (seed 1: the same schedule every run), with the
  kernel's reclaim (after), and with reclaim as the flusher did it before it
  had a policy (before): every flusher round, and every allocation that
  finds no frame, evicts every page nobody is using at that instant
  (remove_contig over every map).
- memory: the peak resident set of `pagemap run --memory 1GiB` in a fresh
  interpreter, against the 1 GiB of frames it was given; the run fails above
  1.5 GiB.
"""

from __future__ import annotations

import contextlib
import json
import mmap as pymmap
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import cast
from unittest import mock

from bench.harness import Report, Rounds, interleave
from pagemap.kernel.errors import BusError
from pagemap.kernel.flusher import Flusher
from pagemap.kernel.mman import MAP_PRIVATE
from pagemap.kernel.pagemap import PageMap
from pagemap.kernel.proc import Proc
from pagemap.kernel.radix import ALL_PAGES
from pagemap.kernel.reclaim import Reclaim
from pagemap.kernel.vfs import File
from pagemap.oracles.coherence import Shadow
from pagemap.workload import data
from pagemap.workload.runner import run_workload
from pagemap.workload.spec import Spec
from pagemap.workload.worker import Worker

OPS = 20_000


class ResidentTree:
    """Linux keeps MAP_LOCKED pages resident: every one is "cached"."""

    @staticmethod
    def lookup(index: int) -> int:
        return 1


class LinuxMapping:
    tree = ResidentTree()


class LinuxFile:
    mapping = LinuxMapping()  # what the Worker asks of the page cache

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size

    def pread(self, n: int, offset: int) -> bytes:
        return os.pread(self.fd, n, offset)

    def pwrite(self, data: bytes, offset: int) -> int:
        return os.pwrite(self.fd, data, offset)


class LinuxProc:
    """Just enough of Proc over real mappings: addresses are map ids << 40."""

    def __init__(self) -> None:
        self.maps: list[pymmap.mmap] = []
        self.pid = 0

    def mmap(
        self,
        length: int,
        prot: int,
        flags: int,
        file: LinuxFile,
        offset: int = 0,
        addr: int | None = None,
    ) -> int:
        if addr is not None:
            return addr  # a MAP_FIXED remap of a window: the map is still there
        access = pymmap.ACCESS_COPY if flags & MAP_PRIVATE else pymmap.ACCESS_WRITE
        # Linux maps past the end of a file (an access there is SIGBUS, which the
        # Worker tries); Python's mmap refuses to, so the map stops at the end of
        # the file (whole pages here) and _at answers BusError past it.
        length = min(length, file.size - offset)
        self.maps.append(pymmap.mmap(file.fd, length, access=access, offset=offset))
        return len(self.maps) << 40

    def _at(self, addr: int) -> tuple[pymmap.mmap, int]:
        m, off = self.maps[(addr >> 40) - 1], addr & ((1 << 40) - 1)
        if off >= len(m):
            raise BusError(f"SIGBUS: {addr:#x} maps no page of the file")
        return m, off

    def load(self, addr: int, n: int) -> bytes:
        m, off = self._at(addr)
        return bytes(m[off : off + n])

    def store(self, addr: int, data: bytes) -> None:
        m, off = self._at(addr)
        m[off : off + len(data)] = data

    def msync(self, addr: int, length: int) -> None:
        # msync(MS_ASYNC), which Linux makes a no-op: the stores are in the
        # page cache already, where ours are once its msync has written them
        # back.  Neither side goes to disk (mmap.flush would: MS_SYNC).
        self._at(addr)

    def munmap(self, addr: int, length: int) -> None:
        pass

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        pass


def linux_seconds_per_op(spec: Spec) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.bin")
        generated = data.Generated(spec.file_size)
        generated.write_to(path)
        shadow = Shadow.of(spec.file_size, generated.read)
        fd = os.open(path, os.O_RDWR)
        try:
            file = LinuxFile(fd, spec.file_size)
            layout = spec.layout()
            problems: list[str] = []
            workers = [
                Worker(
                    w,
                    cast(Proc, LinuxProc()),
                    cast(File, file),
                    layout,
                    shadow,
                    spec.seed,
                    spec.ops // spec.procs,
                    lambda n: None,
                    problems,
                )
                for w in range(spec.procs)
            ]
            t0 = time.perf_counter()
            for w in workers:
                w.run()
            elapsed = time.perf_counter() - t0
            assert not problems, problems[:3]
            return elapsed / spec.ops
        finally:
            os.close(fd)


ROUNDS = 3
GIB = 1 << 30


def ours_seconds_per_op(spec: Spec, rounds: Rounds) -> float:
    """Seconds per op of the job; its hit ratio goes to `rounds` ("hit ratio
    <executor>": under the sim, the same every round)."""
    result = run_workload(spec)
    assert result.ok, [v for v in result.verdicts if not v.ok]
    rounds.add(f"hit ratio {spec.executor}", float(result.counters["hit_ratio"]))
    return result.elapsed / result.ops_done


@contextlib.contextmanager
def reclaim_as_before() -> Iterator[None]:
    """Reclaim as the flusher did before it had a policy: each round, and
    each allocation that finds no free frame, evicts every page nobody is
    using (remove_contig over every map)."""

    def evict_everything(page_maps: Sequence[PageMap]) -> int:
        return sum(pm.remove_contig(0, ALL_PAGES) for pm in list(page_maps))

    def shrink(self: Reclaim, want: int, enough: int | None = None) -> int:
        freed = evict_everything(self.page_maps)
        self.stats.reclaimed += freed
        return freed

    def reclaim_round(self: Flusher) -> int:
        freed = evict_everything(self.page_maps)
        self.stats.rounds += 1
        self.stats.pages_freed += freed
        return freed

    with (
        mock.patch.object(Reclaim, "shrink", shrink),
        mock.patch.object(Flusher, "reclaim_round", reclaim_round),
    ):
        yield


def hit_ratio(spec: Spec) -> float:
    result = run_workload(spec)
    assert result.ok, [v for v in result.verdicts if not v.ok]
    return float(result.counters["hit_ratio"])


def peak_resident_of_a_1gib_run() -> int:
    out = subprocess.run(
        [sys.executable, "-m", "pagemap", "run", "--memory", "1GiB", "--json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return int(json.loads(out)["counters"]["peak_resident_bytes"])


def run(report: Report) -> None:
    got = Rounds()
    spec = Spec.build(executor="sim", ops=OPS)
    interleave(
        {
            "linux": lambda: linux_seconds_per_op(Spec.build(executor="threads", ops=OPS)),
            "threads": lambda: ours_seconds_per_op(Spec.build(executor="threads", ops=OPS), got),
            "sim": lambda: ours_seconds_per_op(spec, got),
        },
        ROUNDS,
        into=got,
        progress="pagemap run ops/s",
    )
    report.add(
        "same op mix on Linux (mmap+os), 1 thread; msync is MS_ASYNC, no fsync; munmap and "
        "mprotect of a window are no-ops (baseline)",
        1 / got.median("linux"),
        "op/s",
    )
    for executor in ("threads", "sim"):
        report.add_rate(
            f"pagemap run ops/s, executor {executor}; msync writes back to the host's "
            "page cache, no fsync",
            got.paired(executor, "linux"),
            "op/s",
        )
    with reclaim_as_before():
        before = hit_ratio(spec)
    after = got.median("hit ratio sim")  # deterministic: the same in every round
    ratios = got.values["hit ratio sim"]
    varied = "" if len(set(ratios)) == 1 else f" (NOT THE SAME IN EVERY ROUND: {ratios})"
    report.add(
        "pagemap run hit ratio, sim seed 1, reclaim evicting every unused page (before)",
        before,
        "hits/lookup",
    )
    report.add(
        f"pagemap run hit ratio, sim seed 1, the kernel's reclaim ({spec.reclaim}){varied}",
        after,
        "hits/lookup",
        baseline=before,
    )
    peak = peak_resident_of_a_1gib_run()
    report.add(
        "pagemap run --memory 1GiB: peak resident memory (against its 1 GiB of frames)",
        peak / (1 << 20),
        "MiB",
        baseline=GIB / (1 << 20),
    )
    assert peak < 1.5 * GIB, f"pagemap run --memory 1GiB peaked at {peak} bytes, over 1.5 GiB"
