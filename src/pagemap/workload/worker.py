"""One process's worth of the `pagemap run` workload.

A worker maps the whole file MAP_SHARED (and one page more, past its last
page), the first pages of its own region a second time MAP_LOCKED, and a
window of the read-only region MAP_PRIVATE.  Then it performs a seeded random
mix of operations, checking every byte it reads against the file's shadow
(oracles/coherence.py; spec.py explains why that is exact).  Every mapping it
makes and unmakes is told to the memory-safety oracle's `Mappings`, at the
address the kernel chose, so the oracle knows what each access must land in.

At the end of the file it does what Linux allows and checks what Linux
promises: in the last page, bytes past the end read as zero until stored to,
and a store there stays in the page (the durability oracle sees that it never
reaches the file); past the last page, any access is SIGBUS.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from pagemap.hw.memory import PGMASK, PGSIZE
from pagemap.kernel.errors import BusError
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
from pagemap.oracles.coherence import Shadow, mismatch
from pagemap.oracles.memory import Mappings
from pagemap.workload.data import CELL, cells
from pagemap.workload.spec import LOCKED_PAGES, PRIVATE_PAGES, Layout

PROGRESS_EVERY = 64


def _down(n: int, unit: int) -> int:
    return n - n % unit


class Worker:
    def __init__(
        self,
        wid: int,
        proc: Proc,
        file: File,
        layout: Layout,
        shadow: Shadow,
        seed: int,
        ops: int,
        progress: Callable[[int], None],
        problems: list[str],
        mappings: Mappings | None = None,
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
        self.mappings = mappings if mappings is not None else Mappings()
        self.size = layout.file_size
        self.pages = (self.size + PGMASK) // PGSIZE  # a last partial page counts
        self.lo, self.hi = layout.worker_region(wid)
        self.cells_hi = self.lo + _down(self.hi - self.lo, CELL)  # writes are whole cells
        self.seq = 0
        self.base = 0  # the shared mapping of the whole file
        self.locked_off = _down(self.lo, PGSIZE)  # mmap takes page-aligned offsets
        self.locked_base = 0
        self.private_off = layout.private_window(wid)
        self.private_base = 0
        # The private window's bytes this worker may check: read-only ones only,
        # since on a small file other workers' stripes share its pages.
        self.private_end = max(
            self.private_off, min(self.private_off + PRIVATE_PAGES * PGSIZE, layout.ro_end)
        )
        self.private_view = Shadow(b"")
        self.locked_loaded: list[int] = []  # pages MAP_LOCKED brought in
        # Past the end of the file in its last page, which this worker alone
        # stores to (it writes the last region): cell offset -> every cell
        # stored there, any of which (or zeros, once the page was read in
        # afresh) a load may see.
        self.owns_tail = wid == len(layout.bounds) - 2 and bool(self.size % PGSIZE)
        self.tail_stores: dict[int, set[bytes]] = {}
        self.counts: dict[str, int] = {}

    # -- set-up --------------------------------------------------------------------
    def map(self) -> None:
        # One page past the last: where every access must be SIGBUS.
        self.base = self._mmap((self.pages + 1) * PGSIZE, MAP_SHARED, 0)
        self.locked_base = self._mmap(
            LOCKED_PAGES * PGSIZE, MAP_SHARED | MAP_LOCKED, self.locked_off
        )
        first = self.locked_off // PGSIZE
        tree = self.file.mapping.tree
        self.locked_loaded = [
            first + i
            for i in range(LOCKED_PAGES)
            if first + i < self.pages and tree.lookup(first + i)
        ]
        self.private_base = self._mmap(PRIVATE_PAGES * PGSIZE, MAP_PRIVATE, self.private_off)
        window, shadow = self.private_off, self.shadow
        self.private_view = Shadow.of(
            self.private_end - window, lambda off, n: shadow.expect(window + off, n)
        )

    def _mmap(self, length: int, flags: int, offset: int, addr: int | None = None) -> int:
        if addr is not None:
            flags |= MAP_FIXED
        base = self.proc.mmap(length, PROT_RW, flags, self.file, offset, addr)
        self.mappings.mapped(
            self.proc.pid, base, length, self.file.mapping, offset, bool(flags & MAP_PRIVATE)
        )
        return base

    # -- the task ------------------------------------------------------------------
    def run(self) -> None:
        self.map()
        writes = self.cells_hi > self.lo
        ops = [
            (25, self.store_mapped, writes),
            (15, self.pwrite, writes),
            (20, self.load_mapped, self.hi > self.lo),
            (10, self.pread_own, self.hi > self.lo),
            (10, self.read_only, self.layout.ro_end > 0),
            (8, self.private, self.private_end - self.private_off >= CELL),
            (4, self.store_locked, self._locked_end() - self.lo >= CELL),
            (3, self.msync, True),
            (3, self.mprotect_window, True),
            (2, self.remap_window, True),
            (2, self.past_the_end, True),
        ]
        weights = [w for w, _, possible in ops if possible]
        fns = [f for _, f, possible in ops if possible]
        for i in range(self.ops):
            fn = self.rng.choices(fns, weights)[0]
            fn()
            self.counts[fn.__name__] = self.counts.get(fn.__name__, 0) + 1
            if (i + 1) % PROGRESS_EVERY == 0:
                self.progress(PROGRESS_EVERY)
        self.progress(self.ops % PROGRESS_EVERY)

    # -- helpers -------------------------------------------------------------------
    def _span(self, lo: int, hi: int, max_len: int) -> tuple[int, int]:
        """A cell-aligned [offset, length) inside [lo, hi), which holds a cell."""
        length = self.rng.randrange(1, min(max_len, hi - lo) // CELL + 1) * CELL
        off = lo + self.rng.randrange((hi - lo - length) // CELL + 1) * CELL
        return off, length

    def _read_span(self, lo: int, hi: int, max_len: int) -> tuple[int, int]:
        """Any [offset, length) inside [lo, hi), which is not empty."""
        length = self.rng.randrange(1, min(max_len, hi - lo) + 1)
        return lo + self.rng.randrange(hi - lo - length + 1), length

    def _data(self, off: int, length: int) -> bytes:
        self.seq += 1
        return cells(off, length, self.writer, self.seq)

    def _expect(self, what: str, off: int, got: bytes, want: bytes) -> None:
        problem = mismatch(f"worker {self.wid} {what}", off, got, want)
        if problem is not None:
            self.problems.append(problem)

    def _locked_end(self) -> int:
        """End of the bytes this worker stores to through its MAP_LOCKED mapping."""
        return min(self.cells_hi, self.locked_off + LOCKED_PAGES * PGSIZE)

    # -- operations ------------------------------------------------------------------
    def store_mapped(self) -> None:
        off, length = self._span(self.lo, self.cells_hi, 512)
        data = self._data(off, length)
        self.proc.store(self.base + off, data)
        self.shadow.write(off, data)

    def store_locked(self) -> None:
        off, length = self._span(self.lo, self._locked_end(), 256)
        data = self._data(off, length)
        self.proc.store(self.locked_base + off - self.locked_off, data)
        self.shadow.write(off, data)

    def pwrite(self) -> None:
        off, length = self._span(self.lo, self.cells_hi, 2048)
        data = self._data(off, length)
        done = self.file.pwrite(data, off)
        self.shadow.write(off, data[:done])  # what the kernel says it wrote, no more
        if done != length:
            self.problems.append(
                f"short count: worker {self.wid} pwrite of {length} bytes at {off:#x} wrote "
                f"{done}, with no I/O error and memory reclaim could free"
            )

    def load_mapped(self) -> None:
        off, length = self._read_span(self.lo, self.hi, 1024)
        got = self.proc.load(self.base + off, length)
        self._expect("load", off, got, self.shadow.expect(off, length))

    def pread_own(self) -> None:
        off, length = self._read_span(self.lo, self.hi, 8192)
        got = self.file.pread(length, off)
        self._expect("pread", off, got, self.shadow.expect(off, length))

    def read_only(self) -> None:
        """Big reads of the read-only region: the memory pressure of the run."""
        off, length = self._read_span(0, self.layout.ro_end, 64 * 1024)
        if self.rng.random() < 0.5:
            got = self.file.pread(length, off)
        else:
            got = self.proc.load(self.base + off, length)
        self._expect("read of the read-only region", off, got, self.shadow.expect(off, length))

    def private(self) -> None:
        lo, hi = self.private_off, self.private_end
        if self.rng.random() < 0.5:
            off, length = self._span(lo, lo + _down(hi - lo, CELL), 256)
            data = self._data(off, length)
            self.proc.store(self.private_base + off - lo, data)
            self.private_view.write(off - lo, data)
        else:
            off, length = self._read_span(lo, hi, 256)
            got = self.proc.load(self.private_base + off - lo, length)
            self._expect("private load", off, got, self.private_view.expect(off - lo, length))

    def _window(self) -> tuple[int, int]:
        """[offset, length) of 1 to 4 whole pages over this worker's region."""
        first = min(self.lo, self.size - 1) // PGSIZE
        last = max(first, (self.hi - 1) // PGSIZE)
        pages = self.rng.randrange(1, min(4, last - first + 1) + 1)
        start = first + self.rng.randrange(last - first + 2 - pages)
        return start * PGSIZE, pages * PGSIZE

    def msync(self) -> None:
        off, length = self._window()
        self.proc.msync(self.base + off, length)

    def mprotect_window(self) -> None:
        off, length = self._window()
        self.proc.mprotect(self.base + off, length, PROT_READ)
        lo, hi = max(off, self.lo), min(off + length, self.hi)
        if lo < hi:  # the bytes of the window this worker knows
            got = self.proc.load(self.base + lo, hi - lo)
            self._expect("load under PROT_READ", lo, got, self.shadow.expect(lo, hi - lo))
        self.proc.mprotect(self.base + off, length, PROT_RW)

    def remap_window(self) -> None:
        off, length = self._window()
        self.proc.munmap(self.base + off, length)
        self.mappings.unmapped(self.proc.pid, self.base + off, length)
        addr = self._mmap(length, MAP_SHARED, off, self.base + off)
        if addr != self.base + off:
            self.problems.append(f"mmap MAP_FIXED at {self.base + off:#x} returned {addr:#x}")

    def past_the_end(self) -> None:
        """Linux's rules at the end of the file (see the module docstring)."""
        if self.owns_tail and self.rng.random() < 0.75:
            self._in_the_last_page()
            return
        off = self.pages * PGSIZE + _down(self.rng.randrange(PGSIZE), CELL)
        store = self.rng.random() < 0.5
        try:
            if store:
                self.proc.store(self.base + off, self._data(off, CELL))
            else:
                self.proc.load(self.base + off, CELL)
        except BusError:
            return
        self.problems.append(
            f"coherence: worker {self.wid} {'stored to' if store else 'loaded from'} file "
            f"offset {off:#x}, past the last page of a file of {self.size} bytes, and got no "
            "SIGBUS"
        )

    def _in_the_last_page(self) -> None:
        end = self.pages * PGSIZE
        first_cell = -(-self.size // CELL) * CELL  # the first whole cell past the end
        what = self.rng.random()
        if what < 0.4 and first_cell < end:
            off, length = self._span(first_cell, end, 256)
            data = self._data(off, length)
            self.proc.store(self.base + off, data)
            for at in range(0, length, CELL):
                self.tail_stores.setdefault(off + at, set()).add(data[at : at + CELL])
        elif what < 0.8:
            got = self.proc.load(self.base + self.size, end - self.size)
            self._check_past_the_end(got)
        else:
            # A read that reaches the end stops there.  From this worker's own
            # bytes (or the read-only ones), which it knows exactly.
            start = max(self.lo, self.size - 64)
            got = self.file.pread(PGSIZE, start)
            self._expect("pread across the end", start, got, self.shadow.expect(start, PGSIZE))

    def _check_past_the_end(self, got: bytes) -> None:
        """Past the end of the file in its last page, each cell holds zeros or
        a cell this worker stored there."""
        pos = self.size
        while pos < self.size + len(got):
            nxt = min(_down(pos, CELL) + CELL, self.size + len(got))
            cell = got[pos - self.size : nxt - self.size]
            if cell.count(0) != len(cell) and cell not in self.tail_stores.get(pos, set()):
                self.problems.append(
                    f"coherence: worker {self.wid} loaded {cell.hex()} at file offset "
                    f"{pos:#x}, past the end of a file of {self.size} bytes, where only zeros "
                    "or its own stores may be"
                )
                return
            pos = nxt
