"""Mappings: a TLB-hit load, minor and major faults, and removal of mapped pages.

Each figure is set against a baseline measured in the same run: a slice of
a Python mmap of the same file (the real MMU), a real minor fault (touching
a fresh Python mmap of a file the host has cached; Linux maps up to 16
pages around each fault, so not every touch faults), a 4 KiB os.pread (the
I/O under a major fault), and posix_fadvise(DONTNEED) (the host evicting
clean cached pages) for removal.  Everything runs on the threads executor,
the one `pagemap run` uses, from the benchmark's own thread (core 0).
"""

from __future__ import annotations

import mmap
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from bench.harness import Report, interleaved, per_op
from pagemap import MAP_SHARED, PGSIZE, PROT_READ, Machine, Proc
from pagemap.kernel.hostfs import HostFile

N_PAGES = 256
REPEAT = 5


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


def best_per_item(setup: Callable[[], None], timed: Callable[[], None], items: int) -> float:
    """Seconds per item of `timed`, best of REPEAT, with `setup` before each
    run and outside the clock."""
    best = float("inf")
    for _ in range(REPEAT):
        setup()
        t0 = time.perf_counter()
        timed()
        best = min(best, time.perf_counter() - t0)
    return best / items


# -- loads ---------------------------------------------------------------------------


def tlb_hit_load(path: str) -> tuple[float, float]:
    """(seconds per 8-byte load through a TLB hit, per 8-byte slice of an mmap)."""
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

            return interleaved(ours, theirs, 50_000)
    finally:
        os.close(fd)


# -- faults ----------------------------------------------------------------------------


def touch_all(p: Proc, base: int) -> None:
    load = p.load
    for i in range(N_PAGES):
        load(base + i * PGSIZE, 1)


def minor_faults(path: str) -> tuple[float, float]:
    """(seconds per minor fault: page cached, PTE absent; per real minor fault)."""
    m, f = machine_over(path)
    p = m.process()
    f.pread(N_PAGES * PGSIZE, 0)  # every page cached
    state: dict[str, int] = {}

    def fresh_mapping() -> None:
        if "a" in state:
            p.munmap(state["a"], N_PAGES * PGSIZE)
        state["a"] = p.mmap(N_PAGES * PGSIZE, PROT_READ, MAP_SHARED, f)

    ours = best_per_item(fresh_mapping, lambda: touch_all(p, state["a"]), N_PAGES)

    fd = os.open(path, os.O_RDONLY)
    maps: list[mmap.mmap] = []

    def fresh_host_mapping() -> None:
        for old in maps:
            old.close()
        maps[:] = [mmap.mmap(fd, N_PAGES * PGSIZE, prot=mmap.PROT_READ)]

    def touch_host() -> None:
        mm = maps[0]
        for i in range(N_PAGES):
            mm[i * PGSIZE]

    try:
        theirs = best_per_item(fresh_host_mapping, touch_host, N_PAGES)
    finally:
        for old in maps:
            old.close()
        os.close(fd)
    return ours, theirs


def major_faults(path: str) -> tuple[float, float]:
    """(seconds per major fault: the page read in through readpage; per 4 KiB pread)."""
    m, f = machine_over(path)
    p = m.process()
    a = p.mmap(N_PAGES * PGSIZE, PROT_READ, MAP_SHARED, f)

    def evict() -> None:
        f.mapping.remove_contig(0, N_PAGES)
        assert f.mapping.nr_pages == 0

    ours = best_per_item(evict, lambda: touch_all(p, a), N_PAGES)
    fd = os.open(path, os.O_RDONLY)
    try:

        def preads(n: int) -> None:
            for i in range(n):
                os.pread(fd, PGSIZE, (i % N_PAGES) * PGSIZE)

        theirs = per_op(preads, 20_000)
    finally:
        os.close(fd)
    return ours, theirs


# -- removal ------------------------------------------------------------------------------


def removal(path: str, mapped_by: int) -> float:
    """Seconds per page freed by remove_contig over the whole file, cached and
    (with mapped_by > 0) mapped and touched by that many processes."""
    m, f = machine_over(path)
    procs = [m.process() for _ in range(mapped_by)]
    bases = [p.mmap(N_PAGES * PGSIZE, PROT_READ, MAP_SHARED, f) for p in procs]

    def fill() -> None:
        f.pread(N_PAGES * PGSIZE, 0)
        for p, a in zip(procs, bases, strict=True):
            touch_all(p, a)

    def remove() -> None:
        freed = f.mapping.remove_contig(0, N_PAGES)
        assert freed == N_PAGES, freed

    return best_per_item(fill, remove, N_PAGES)


def host_eviction(path: str) -> float:
    """Seconds per page for posix_fadvise(DONTNEED) of the cached file."""
    fd = os.open(path, os.O_RDONLY)
    try:

        def fill() -> None:
            os.pread(fd, N_PAGES * PGSIZE, 0)

        return best_per_item(
            fill, lambda: os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED), N_PAGES
        )
    finally:
        os.close(fd)


def run(report: Report) -> None:
    with data_file() as path:
        ours, theirs = tlb_hit_load(path)
        report.add("mmap slice of 8 bytes, host MMU (baseline)", theirs * 1e6, "us/op")
        report.add("8-byte load, TLB hit", ours * 1e6, "us/op", baseline=theirs * 1e6)

        ours, theirs = minor_faults(path)
        report.add("host first touches/s of a fresh mmap, cached (baseline)", 1 / theirs, "touch/s")
        report.add("minor faults/s (page cached)", 1 / ours, "fault/s", baseline=1 / theirs)

        ours, theirs = major_faults(path)
        report.add("os.pread 4 KiB/s, warm (baseline)", 1 / theirs, "op/s")
        report.add("major faults/s (readpage)", 1 / ours, "fault/s", baseline=1 / theirs)

        host = host_eviction(path)
        unmapped = removal(path, 0)
        mapped = removal(path, 4)
        report.add("host fadvise DONTNEED pages/s (baseline)", 1 / host, "page/s")
        report.add("remove_contig pages/s, unmapped", 1 / unmapped, "page/s", baseline=1 / host)
        report.add(
            "remove_contig pages/s, mapped by 4 processes",
            1 / mapped,
            "page/s",
            baseline=1 / unmapped,
        )
