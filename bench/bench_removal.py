"""Removal at scale: remove_contig of 100,000 cached pages, against the host
evicting the same number of pages.

- clean pages no process maps, freed by one remove_contig over the file,
  against posix_fadvise(DONTNEED) of a host file of the same 100,000 pages
  (each figure pages/s, the median of paired rounds: the harness's rule);
- the same pages mapped by 16 processes (each has touched its sixteenth of
  the file, so every page has one PTE to clear and one process to shoot
  down), against the unmapped figure of the same rounds.

The host cannot be asked to drop mapped pages (it refuses while they are
mapped), so the mapped figure's baseline is our own unmapped one.
"""

from __future__ import annotations

import os
import tempfile
import time

from bench.harness import Report, interleave
from pagemap import MAP_SHARED, PGSIZE, PROT_READ, Machine

PAGES = 100_000
PROCS = 16
ROUNDS = 3
CHUNK = 64 * PGSIZE


def make_file(path: str) -> None:
    with open(path, "wb") as f:
        block = os.urandom(CHUNK)
        for _ in range(0, PAGES * PGSIZE, CHUNK):
            f.write(block)
        f.truncate(PAGES * PGSIZE)
        f.flush()
        os.fsync(f.fileno())  # clean pages, or DONTNEED would keep them


def fill(f: object, pread: object) -> None:
    for off in range(0, PAGES * PGSIZE, CHUNK):
        pread(CHUNK, off)  # type: ignore[operator]


def ours_once(path: str, procs: int) -> float:
    """Seconds per page freed by one remove_contig over the whole file."""
    m = Machine(cores=4, memory=(PAGES + 1) * PGSIZE, executor="threads")
    f = m.open(path, "r")
    fill(f, f.pread)
    share = PAGES // procs if procs else 0
    for i in range(procs):
        p = m.process()
        base = p.mmap(PAGES * PGSIZE, PROT_READ, MAP_SHARED, f)
        for page in range(i * share, (i + 1) * share):
            p.load(base + page * PGSIZE, 1)
    t0 = time.perf_counter()
    freed = f.mapping.remove_contig(0, PAGES)
    took = time.perf_counter() - t0
    assert freed == PAGES, freed
    return took / PAGES


def host_once(path: str) -> float:
    """Seconds per page of posix_fadvise(DONTNEED) of the cached file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fill(None, lambda n, off: os.pread(fd, n, off))
        t0 = time.perf_counter()
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return (time.perf_counter() - t0) / PAGES
    finally:
        os.close(fd)


def run(report: Report) -> None:
    with tempfile.TemporaryDirectory(prefix="pagemap-bench-rm-") as tmp:
        path = os.path.join(tmp, "data.bin")
        make_file(path)
        got = interleave(
            {
                "ours": lambda: ours_once(path, 0),
                "host": lambda: host_once(path),
                "mapped": lambda: ours_once(path, PROCS),
            },
            ROUNDS,
            progress="removal",
        )
        report.add(
            f"host fadvise DONTNEED pages/s, {PAGES} pages (baseline)",
            1 / got.median("host"),
            "page/s",
        )
        report.add_rate(
            f"remove_contig pages/s, {PAGES} clean unmapped pages",
            got.paired("ours", "host"),
            "page/s",
        )
        report.add_rate(
            f"remove_contig pages/s, {PAGES} pages mapped by {PROCS} processes (vs unmapped)",
            got.paired("mapped", "ours"),
            "page/s",
        )
