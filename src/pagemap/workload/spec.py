"""What `pagemap run` runs: the knobs, and how the file is carved up.

The file is split so that every check can be exact under any interleaving:

    [ read-only region | worker 1 | worker 2 | ... | worker N ]

Nobody writes the read-only region, so every read of it must return the
original bytes.  Each worker (one per process) is the only writer of its own
region, through its shared mapping and through pwrite, so it knows exactly
what every read of its region must return, however the flusher, the other
processes' mappings of the same pages, and the scheduler interleave.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass

from pagemap.hw.memory import PGSIZE, parse_size
from pagemap.kernel.policy import KERNEL_DEFAULT, POLICIES
from pagemap.options import format_size
from pagemap.workload.data import CELL

MiB = 1 << 20

# The first pages of each worker's region are also mapped MAP_LOCKED.
LOCKED_PAGES = 8
# Each worker maps this many pages of the read-only region MAP_PRIVATE.
PRIVATE_PAGES = 16


@dataclass(frozen=True)
class Spec:
    executor: str = "threads"
    seed: int = 1
    cores: int = 4
    memory: int = 64 * MiB
    file_size: int = 96 * MiB
    procs: int = 4
    ops: int = 20_000
    file: str | None = None
    flusher_period: float = 0.01
    reclaim: str = KERNEL_DEFAULT
    image: str | None = None

    @staticmethod
    def build(
        executor: str = "threads",
        seed: int = 1,
        cores: int = 4,
        memory: int | str = 64 * MiB,
        file_size: int | str = 96 * MiB,
        procs: int = 4,
        ops: int = 20_000,
        file: str | None = None,
        flusher_period: float = 0.01,
        reclaim: str = KERNEL_DEFAULT,
        image: str | None = None,
    ) -> Spec:
        """A checked Spec; ValueError with a sentence for anything off."""
        if executor not in ("threads", "sim"):
            raise ValueError(f"unknown executor {executor!r}: choose threads or sim")
        if cores < 1:
            raise ValueError(f"--cores must be at least 1, not {cores}")
        if procs < 1:
            raise ValueError(f"--procs must be at least 1, not {procs}")
        if ops < 0:
            raise ValueError(f"--ops cannot be negative ({ops})")
        if not math.isfinite(flusher_period) or not flusher_period > 0:
            raise ValueError(
                "--flusher-period must be a finite positive number of seconds, "
                f"not {flusher_period}"
            )
        if reclaim not in POLICIES:
            raise ValueError(f"--reclaim {reclaim!r} is not one of {', '.join(POLICIES)}")
        mem = parse_size(memory)
        if mem < 64 * PGSIZE:
            raise ValueError(f"--memory of {mem} bytes is too small: give at least 256KiB")
        frames = mem // PGSIZE - 1
        pinned, private = procs * LOCKED_PAGES, procs * PRIVATE_PAGES
        if pinned + private + 2 * procs > frames:
            # Reclaim can free neither: MAP_LOCKED pages stay, and a private
            # copy is anonymous memory with no swap to go to.
            raise ValueError(
                f"{procs} processes pin {pinned} pages (MAP_LOCKED), may keep {private} "
                f"private copies (MAP_PRIVATE: no swap, so never reclaimed) and need 2 more "
                f"each at once: more than the {frames} frames of --memory {format_size(mem)}; give "
                "more memory or fewer processes"
            )
        if file is not None and image is not None:
            raise ValueError("--file and --image cannot both be given: the job runs on one file")
        if image is not None:
            regular_file_size(image, "--image")  # refused before anything is copied
        size = parse_size(file_size) if file is None else regular_file_size(file)
        spec = Spec(
            executor,
            seed,
            cores,
            mem,
            size,
            procs,
            ops,
            file,
            flusher_period,
            reclaim=reclaim,
            image=image,
        )
        spec.layout()  # raises for an empty file
        return spec

    def layout(self) -> Layout:
        return Layout.of(self.file_size, self.procs)


def regular_file_size(path: str, option: str = "--file") -> int:
    """The size of the user's file (or image), which must be a regular file: a
    device such as /dev/zero would be copied without end, and a FIFO would
    block the copy."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise OSError(exc.errno, f"{option} {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise ValueError(f"{option} {path} is {kind}: give a regular file, which is copied")
    return st.st_size


@dataclass(frozen=True)
class Layout:
    """Who writes what: [0, ro_end) is read-only, and worker w alone writes
    [bounds[w], bounds[w + 1]); the last worker's region runs to the end of
    the file, a last partial page included.

    A file with room for it gets whole pages per region, at least
    2 * LOCKED_PAGES each, and PRIVATE_PAGES or more read-only; a smaller one
    (down to a single byte) is split by cells, and regions then share pages.
    mmap offsets stay page-aligned either way (see Worker.map)."""

    file_size: int
    ro_end: int
    bounds: tuple[int, ...]

    @staticmethod
    def of(file_size: int, procs: int) -> Layout:
        if file_size < 1:
            raise ValueError("a file of 0 bytes has nothing to map: give at least 1 byte")
        pages = file_size // PGSIZE
        per_worker = pages // (2 * procs)
        if per_worker >= 2 * LOCKED_PAGES and pages - per_worker * procs >= PRIVATE_PAGES:
            ro_end, unit = (pages - per_worker * procs) * PGSIZE, per_worker * PGSIZE
        else:
            whole = file_size // CELL
            ro_end = whole // 2 * CELL
            unit = (whole - whole // 2) // procs * CELL
        bounds = (*(ro_end + w * unit for w in range(procs)), file_size)
        return Layout(file_size, ro_end, bounds)

    def worker_region(self, wid: int) -> tuple[int, int]:
        """[lo, hi) of worker `wid` (0-based)."""
        return self.bounds[wid], self.bounds[wid + 1]

    def private_window(self, wid: int) -> int:
        """Offset of the read-only pages worker `wid` maps privately."""
        slots = max(1, self.ro_end // PGSIZE - PRIVATE_PAGES)
        return (wid * 7919 % slots) * PGSIZE
