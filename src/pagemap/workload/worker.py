"""One process's worth of the `pagemap run` workload.

A worker maps the whole file MAP_SHARED, the first pages of its own region a
second time MAP_LOCKED, and a window of the read-only region MAP_PRIVATE.
Then it performs a seeded random mix of operations, checking every byte it
reads against what it must be (spec.py explains why that is exact).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from pagemap.hw.memory import PGSIZE
from pagemap.kernel.mman import (
    MAP_FIXED,
    MAP_LOCKED,
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_READ,
    PROT_RW,
)
from pagemap.kernel.proc import Proc
from pagemap.kernel.vfs import File
from pagemap.workload.data import CELL, cells
from pagemap.workload.spec import LOCKED_PAGES, PRIVATE_PAGES, Layout

PROGRESS_EVERY = 64


class Worker:
    def __init__(
        self,
        wid: int,
        proc: Proc,
        file: File,
        layout: Layout,
        shadow: bytearray,
        seed: int,
        ops: int,
        progress: Callable[[int], None],
        problems: list[str],
    ) -> None:
        self.wid = wid
        self.writer = wid + 1  # 0 marks the original bytes
        self.proc = proc
        self.file = file
        self.layout = layout
        self.shadow = shadow
        self.rng = random.Random(f"pagemap-run:{seed}:{wid}")
        self.ops = ops
        self.progress = progress
        self.problems = problems
        self.lo, self.hi = layout.worker_region(wid)
        self.seq = 0
        self.base = 0  # the shared mapping of the whole file
        self.locked_base = 0
        self.private_base = 0
        self.private_off = layout.private_window(wid)
        self.private_shadow = bytearray()
        self.locked_loaded: list[int] = []  # pages MAP_LOCKED brought in
        self.counts: dict[str, int] = {}

    # -- set-up --------------------------------------------------------------------
    def map(self) -> None:
        size = self.layout.file_size
        self.base = self.proc.mmap(size, PROT_RW, MAP_SHARED, self.file, 0)
        self.locked_base = self.proc.mmap(
            LOCKED_PAGES * PGSIZE, PROT_RW, MAP_SHARED | MAP_LOCKED, self.file, self.lo
        )
        first = self.lo // PGSIZE
        tree = self.file.mapping.tree
        self.locked_loaded = [first + i for i in range(LOCKED_PAGES) if tree.lookup(first + i)]
        length = PRIVATE_PAGES * PGSIZE
        self.private_base = self.proc.mmap(
            length, PROT_RW, MAP_PRIVATE, self.file, self.private_off
        )
        self.private_shadow = bytearray(self.shadow[self.private_off : self.private_off + length])

    # -- the task ------------------------------------------------------------------
    def run(self) -> None:
        self.map()
        ops = [
            (25, self.store_mapped),
            (15, self.pwrite),
            (20, self.load_mapped),
            (10, self.pread_own),
            (10, self.read_only),
            (8, self.private),
            (4, self.store_locked),
            (3, self.msync),
            (3, self.mprotect_window),
            (2, self.remap_window),
        ]
        weights = [w for w, _ in ops]
        fns = [f for _, f in ops]
        for i in range(self.ops):
            fn = self.rng.choices(fns, weights)[0]
            fn()
            self.counts[fn.__name__] = self.counts.get(fn.__name__, 0) + 1
            if (i + 1) % PROGRESS_EVERY == 0:
                self.progress(PROGRESS_EVERY)
        self.progress(self.ops % PROGRESS_EVERY)

    # -- helpers -------------------------------------------------------------------
    def _span(self, lo: int, hi: int, max_len: int) -> tuple[int, int]:
        """A cell-aligned [offset, length) inside [lo, hi)."""
        length = self.rng.randrange(1, max_len // CELL + 1) * CELL
        off = lo + self.rng.randrange((hi - lo - length) // CELL + 1) * CELL
        return off, length

    def _data(self, off: int, length: int) -> bytes:
        self.seq += 1
        return cells(off, length, self.writer, self.seq)

    def _expect(self, what: str, off: int, got: bytes, want: bytes | bytearray) -> None:
        if len(got) != len(want):
            self.problems.append(
                f"short count: worker {self.wid} {what} at file offset {off:#x} returned "
                f"{len(got)} of {len(want)} bytes, inside the file"
            )
            return
        if got != want:
            first = (
                next(i for i in range(min(len(got), len(want))) if got[i] != want[i])
                if len(got) == len(want)
                else 0
            )
            self.problems.append(
                f"coherence: worker {self.wid} {what} at file offset {off + first:#x} "
                f"read {got[first : first + 16].hex()} but {bytes(want[first : first + 16]).hex()} "
                f"was last written there"
            )

    def _remember(self, off: int, data: bytes) -> None:
        self.shadow[off : off + len(data)] = data

    # -- operations ------------------------------------------------------------------
    def store_mapped(self) -> None:
        off, length = self._span(self.lo, self.hi, 512)
        data = self._data(off, length)
        self.proc.store(self.base + off, data)
        self._remember(off, data)

    def store_locked(self) -> None:
        off, length = self._span(self.lo, self.lo + LOCKED_PAGES * PGSIZE, 256)
        data = self._data(off, length)
        self.proc.store(self.locked_base + off - self.lo, data)
        self._remember(off, data)

    def pwrite(self) -> None:
        off, length = self._span(self.lo, self.hi, 2048)
        data = self._data(off, length)
        done = self.file.pwrite(data, off)
        self._remember(off, data[:done])  # what the kernel says it wrote, no more
        if done != length:
            self.problems.append(
                f"short count: worker {self.wid} pwrite of {length} bytes at {off:#x} wrote "
                f"{done}, with no I/O error and memory reclaim could free"
            )

    def load_mapped(self) -> None:
        off, length = self._span(self.lo, self.hi, 1024)
        got = self.proc.load(self.base + off, length)
        self._expect("load", off, got, self.shadow[off : off + length])

    def pread_own(self) -> None:
        off, length = self._span(self.lo, self.hi, 8192)
        got = self.file.pread(length, off)
        self._expect("pread", off, got, self.shadow[off : off + length])

    def read_only(self) -> None:
        """Big reads of the read-only region: the memory pressure of the run."""
        off, length = self._span(0, self.layout.ro_end, 64 * 1024)
        if self.rng.random() < 0.5:
            got = self.file.pread(length, off)
        else:
            got = self.proc.load(self.base + off, length)
        self._expect("read of the read-only region", off, got, self.shadow[off : off + length])

    def private(self) -> None:
        size = PRIVATE_PAGES * PGSIZE
        rel, length = self._span(0, size, 256)
        if self.rng.random() < 0.5:
            data = self._data(self.private_off + rel, length)
            self.proc.store(self.private_base + rel, data)
            self.private_shadow[rel : rel + length] = data
        else:
            got = self.proc.load(self.private_base + rel, length)
            self._expect(
                "private load", self.private_off + rel, got, self.private_shadow[rel : rel + length]
            )

    def _window(self) -> tuple[int, int]:
        pages = self.rng.randrange(1, 5)
        first = self.rng.randrange((self.hi - self.lo) // PGSIZE - pages + 1)
        return self.lo + first * PGSIZE, pages * PGSIZE

    def msync(self) -> None:
        off, length = self._window()
        self.proc.msync(self.base + off, length)

    def mprotect_window(self) -> None:
        off, length = self._window()
        self.proc.mprotect(self.base + off, length, PROT_READ)
        got = self.proc.load(self.base + off, length)
        self._expect("load under PROT_READ", off, got, self.shadow[off : off + length])
        self.proc.mprotect(self.base + off, length, PROT_RW)

    def remap_window(self) -> None:
        off, length = self._window()
        self.proc.munmap(self.base + off, length)
        addr = self.proc.mmap(
            length, PROT_RW, MAP_SHARED | MAP_FIXED, self.file, off, self.base + off
        )
        if addr != self.base + off:
            self.problems.append(f"mmap MAP_FIXED at {self.base + off:#x} returned {addr:#x}")
