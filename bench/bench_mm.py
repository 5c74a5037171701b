"""Mappings: a TLB-hit load, minor and major faults, and removal of mapped pages.

Each figure is set against a baseline measured in the same run: a slice of
a Python mmap of the same file (the real MMU), a real minor fault (touching
a fresh Python mmap of a file the host has cached; Linux maps up to 16
pages around each fault, so not every touch faults), a 4 KiB os.pread (the
I/O under a major fault), and posix_fadvise(DONTNEED) (the host evicting
clean cached pages) for removal.  Everything runs on the threads executor,
the one `pagemap run` uses, from the benchmark's own thread (core 0).
Each figure is the median of paired rounds against its baseline (harness),
both sides doing as many operations: loads, first touches of N_PAGES
pages, N_PAGES major faults against N_PAGES preads, N_PAGES pages evicted.
"""

from __future__ import annotations

import mmap
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from bench.harness import Paired, Report, Rounds, interleave, paired, timer
from pagemap import MAP_SHARED, PGSIZE, PROT_READ, Machine, Proc
from pagemap.kernel.hostfs import HostFile

N_PAGES = 256
ROUNDS = 7


@contextmanager
def data_file() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="pagemap-bench-mm-") as tmp:
        path = os.path.join(tmp, "data.bin")
        with open(path, "wb") as f:
            f.write(os.urandom(N_PAGES * PGSIZE))
            f.flush()
            os.fsync(f.fileno())  # clean pages, or the host's DONTNEED would keep them
        with open(path, "rb") as f:
            f.read()  # warm the host's cache: no figure here is about the disk
        yield path


def machine_over(path: str) -> tuple[Machine, HostFile]:
    m = Machine(cores=4, memory=(4 * N_PAGES + 1) * PGSIZE, executor="threads")
    return m, m.open(path, "r+")


# -- loads ---------------------------------------------------------------------------


def tlb_hit_load(path: str) -> Paired:
    """Seconds per 8-byte load through a TLB hit, against per 8-byte slice of an mmap."""
    m, f = machine_over(path)
    p = m.process()
    a = p.mmap(N_PAGES * PGSIZE, PROT_READ, MAP_SHARED, f)
    p.load(a, 8)  # fault it in; every load below hits core 0's TLB

    def ours(n: int) -> None:
        load = p.load
        for _ in range(n):
            load(a, 8)

    fd = os.open(path, os.O_RDONLY)
    try:
        with mmap.mmap(fd, N_PAGES * PGSIZE, prot=mmap.PROT_READ) as mm:
            mm[0:8]

            def theirs(n: int) -> None:
                for _ in range(n):
                    mm[0:8]

            return paired(ours, theirs, 50_000)
    finally:
        os.close(fd)


# -- faults ----------------------------------------------------------------------------


def touch_all(p: Proc, base: int, n: int = N_PAGES) -> None:
    load = p.load
    for i in range(n):
        load(base + i * PGSIZE, 1)


def minor_faults(path: str) -> Paired:
    """Seconds per minor fault (page cached, PTE absent), against per first
    touch of a page of a fresh host mmap."""
    m, f = machine_over(path)
    p = m.process()
    f.pread(N_PAGES * PGSIZE, 0)  # every page cached
    state: dict[str, int] = {}

    def fresh_mapping() -> None:
        if "a" in state:
            p.munmap(state["a"], N_PAGES * PGSIZE)
        state["a"] = p.mmap(N_PAGES * PGSIZE, PROT_READ, MAP_SHARED, f)

    fd = os.open(path, os.O_RDONLY)
    maps: list[mmap.mmap] = []

    def fresh_host_mapping() -> None:
        for old in maps:
            old.close()
        maps[:] = [mmap.mmap(fd, N_PAGES * PGSIZE, prot=mmap.PROT_READ)]

    def touch_host(n: int) -> None:
        mm = maps[0]
        for i in range(n):
            mm[i * PGSIZE]

    try:
        return paired(
            lambda n: touch_all(p, state["a"], n),
            touch_host,
            N_PAGES,
            ROUNDS,
            setup=fresh_mapping,
            baseline_setup=fresh_host_mapping,
        )
    finally:
        for old in maps:
            old.close()
        os.close(fd)


def major_faults(path: str) -> Paired:
    """Seconds per major fault (the page read in through readpage), against
    per 4 KiB pread of the same pages."""
    m, f = machine_over(path)
    p = m.process()
    a = p.mmap(N_PAGES * PGSIZE, PROT_READ, MAP_SHARED, f)

    def evict() -> None:
        f.mapping.remove_contig(0, N_PAGES)
        assert f.mapping.nr_pages == 0

    fd = os.open(path, os.O_RDONLY)
    try:

        def preads(n: int) -> None:
            for i in range(n):
                os.pread(fd, PGSIZE, i * PGSIZE)

        return paired(
            lambda n: touch_all(p, a, n), preads, N_PAGES, ROUNDS, setup=evict, baseline_setup=None
        )
    finally:
        os.close(fd)


# -- removal ------------------------------------------------------------------------------


def removal(path: str, mapped_by: int) -> tuple[Callable[[], object], Callable[[int], object]]:
    """(setup, remove) of remove_contig over the whole file, cached and (with
    mapped_by > 0) mapped and touched by that many processes."""
    m, f = machine_over(path)
    procs = [m.process() for _ in range(mapped_by)]
    bases = [p.mmap(N_PAGES * PGSIZE, PROT_READ, MAP_SHARED, f) for p in procs]

    def fill() -> None:
        f.pread(N_PAGES * PGSIZE, 0)
        for p, a in zip(procs, bases, strict=True):
            touch_all(p, a)

    def remove(n: int) -> None:
        freed = f.mapping.remove_contig(0, n)
        assert freed == n, freed

    return fill, remove


def evictions(path: str) -> Rounds:
    """Seconds per page evicted: remove_contig unmapped ("unmapped"), mapped
    by 4 processes ("mapped"), and the host's posix_fadvise(DONTNEED) of the
    cached file ("host"), in the same rounds."""
    fd = os.open(path, os.O_RDONLY)
    try:

        def fadvise(n: int) -> None:
            os.posix_fadvise(fd, 0, n * PGSIZE, os.POSIX_FADV_DONTNEED)

        unmapped, mapped = removal(path, 0), removal(path, 4)
        return interleave(
            {
                "host": timer(fadvise, N_PAGES, lambda: os.pread(fd, N_PAGES * PGSIZE, 0)),
                "unmapped": timer(unmapped[1], N_PAGES, unmapped[0]),
                "mapped": timer(mapped[1], N_PAGES, mapped[0]),
            },
            ROUNDS,
        )
    finally:
        os.close(fd)


def run(report: Report) -> None:
    with data_file() as path:
        load = tlb_hit_load(path)
        report.add("mmap slice of 8 bytes, host MMU (baseline)", load.baseline * 1e6, "us/op")
        report.add_time("8-byte load, TLB hit", load, "us/op", 1e6)

        minor = minor_faults(path)
        report.add(
            "host first touches/s of a fresh mmap, cached (baseline)", 1 / minor.baseline, "touch/s"
        )
        report.add_rate("minor faults/s (page cached)", minor, "fault/s")

        major = major_faults(path)
        report.add("os.pread 4 KiB/s, warm (baseline)", 1 / major.baseline, "op/s")
        report.add_rate("major faults/s (readpage)", major, "fault/s")

        rm = evictions(path)
        report.add(
            f"host fadvise DONTNEED pages/s, {N_PAGES} pages (baseline)",
            1 / rm.median("host"),
            "page/s",
        )
        report.add_rate(
            f"remove_contig pages/s, {N_PAGES} pages, unmapped",
            rm.paired("unmapped", "host"),
            "page/s",
        )
        report.add_rate(
            f"remove_contig pages/s, {N_PAGES} pages, mapped by 4 processes (vs unmapped)",
            rm.paired("mapped", "unmapped"),
            "page/s",
        )
