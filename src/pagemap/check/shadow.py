"""A real file for scenarios with files and mappings, and its shadow.

`ShadowFile` writes a small file of stamped pages to a fresh temp file for
each schedule, opens it through the Machine (so pages come from the real
HostFS and page map), and keeps the shadow: what the file must hold if every
store and pwrite so far had reached it, in order.  It installs the
Machine's access hook, so that for every user load and store, just before
its bytes land (no scheduling point in between):

- memory safety: the frame is not free, and the page in it is the page the
  region maps at that address (or the process's own private copy);
- coherence: a store's bytes go into the shadow at that instant, and a
  load's expected bytes are taken from it then, to be compared when the load
  returns.

Every 8-byte slot has one writer, so "the latest store" is always defined.
Slots written with pwrite are checked by their writer after it returns and
by the durability oracle at the end, since a pwrite's bytes land with no
hook to time them.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from pagemap.check.oracle import (
    ACCOUNTING,
    COHERENCE,
    DURABILITY,
    MEMORY_SAFETY,
    RunContext,
    Violation,
)
from pagemap.check.scenario import drained, quiescent
from pagemap.hw.memory import PGSHIFT, PGSIZE
from pagemap.kernel.mman import MAP_PRIVATE
from pagemap.kernel.proc import Proc
from pagemap.kernel.vfs import File

SLOT = 8


def stamp(page: int, slot: int, version: int) -> bytes:
    """Eight bytes naming (page, slot, version); never all zeros."""
    return ((page & 0xFFFF) | (slot & 0x1FF) << 16 | (version & 0xFFFFFF) << 32 | 1 << 63).to_bytes(
        SLOT, "little"
    )


@functools.cache
def initial_bytes(pages: int) -> bytes:
    """The file every schedule starts from (a pure function, so computed once)."""
    out = bytearray()
    for p in range(pages):
        out += b"".join(stamp(p, s, 0) for s in range(PGSIZE // SLOT))
    return bytes(out)


def scratch_file(name: str, data: bytes) -> tuple[str, Callable[[], None]]:
    """A fresh file called `name` holding `data`, in a fresh temp directory
    (so traces name it the same every time), and how to remove both.  In
    memory (/dev/shm) where there is one: a schedule lives a few milliseconds."""
    shm = "/dev/shm"
    where = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
    folder = tempfile.mkdtemp(prefix="pagemap-check-", dir=where)
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(data)

    def remove() -> None:
        os.unlink(path)
        os.rmdir(folder)

    return path, remove


@dataclass
class Region:
    proc: Proc
    base: int
    end: int
    foff: int
    private: bool


class ShadowFile:
    def __init__(self, ctx: RunContext, pages: int, name: str = "file") -> None:
        self.ctx = ctx
        data = initial_bytes(pages)
        self.path, remove = scratch_file(name, data)
        ctx.cleanup(remove)
        self.file: File = ctx.machine.open(self.path, "r+")
        io = getattr(self.file.inode, "io", None)
        if io is not None:
            ctx.cleanup(io.close)
        self.pm = self.file.mapping
        self.shadow = bytearray(data)
        self.versions: dict[int, int] = {}  # file offset of a slot -> its latest version
        self.private: dict[tuple[int, int], bytes] = {}  # (pid, va) -> a private store
        # (pid, vpn) of private copies: their other slots are a snapshot, not the file.
        self.copied: set[tuple[int, int]] = set()
        self.regions: list[Region] = []
        # task id -> what its store is about to write, or what its load must see.
        self._store: dict[int, tuple[int, bytes]] = {}
        self._expect: dict[int, bytes] = {}
        ctx.machine.on_access = self._on_access

    # -- task side ----------------------------------------------------------------
    def map(self, proc: Proc, pages: int, prot: int, flags: int, first: int = 0) -> int:
        base = proc.mmap(pages * PGSIZE, prot, flags, file=self.file, offset=first * PGSIZE)
        self.regions.append(
            Region(proc, base, base + pages * PGSIZE, first * PGSIZE, bool(flags & MAP_PRIVATE))
        )
        return base

    def unmapped(self, proc: Proc, base: int) -> None:
        self.regions = [r for r in self.regions if not (r.proc is proc and r.base == base)]

    def store(self, proc: Proc, va: int) -> None:
        """Store the next version of the slot at `va` (the caller owns it)."""
        off = self._file_offset(proc, va)
        version = self.versions.get(off, 0) + 1
        self.versions[off] = version
        data = stamp(off >> PGSHIFT, (off % PGSIZE) // SLOT, version)
        self._store[self._tid()] = (va, data)
        try:
            proc.store(va, data)
        finally:
            self._store.pop(self._tid(), None)

    def load(self, proc: Proc, va: int) -> None:
        """Load the slot at `va` and check it is the latest store to it."""
        got = proc.load(va, SLOT)
        want = self._expect.pop(self._tid(), None)
        if want is not None and got != want:
            self.ctx.fail(
                COHERENCE,
                f"{self._who()} loaded {got.hex()} at {va:#x} (p{proc.pid}) but the latest "
                f"store there wrote {want.hex()}",
            )

    def pwrite(self, offset: int) -> None:
        version = self.versions.get(offset, 0) + 1
        self.versions[offset] = version
        data = stamp(offset >> PGSHIFT, (offset % PGSIZE) // SLOT, version)
        self.file.pwrite(data, offset)
        self.shadow[offset : offset + SLOT] = data
        self.pread(offset)

    def pread(self, offset: int) -> None:
        """Read a slot with pread; it must hold the latest write (call only for
        slots this task writes, or that nobody writes)."""
        got = self.file.pread(SLOT, offset)
        want = bytes(self.shadow[offset : offset + SLOT])
        if got != want:
            self.ctx.fail(
                COHERENCE,
                f"{self._who()} read {got.hex()} at offset {offset} but the file "
                f"holds {want.hex()}",
            )

    def no_stale_translation(self) -> None:
        """Once removal returns, no PTE or TLB entry names a free frame."""
        machine = self.ctx.machine
        free = machine.allocator.is_free
        for proc in machine.procs:
            for core, vpn, ppn in machine.mmu.cached_ppns(proc.pid):
                if free(ppn):
                    self.ctx.fail(
                        MEMORY_SAFETY,
                        f"core {core}'s TLB still maps p{proc.pid} page {vpn:#x} to free frame "
                        f"{ppn} after remove_contig returned",
                    )
            for vpn, word in proc.page_table.ptes(0, 1 << 36):
                if word.value & 1 and free(word.value >> PGSHIFT):
                    self.ctx.fail(
                        MEMORY_SAFETY,
                        f"p{proc.pid}'s PTE for page {vpn:#x} still names free frame "
                        f"{word.value >> PGSHIFT} after remove_contig returned",
                    )

    # -- the end --------------------------------------------------------------------
    def end_checks(self) -> None:
        """Accounting at quiescence; then every process exits (passing its D
        bits on) and every page is removed (written back), so no frame may
        stay in use and the file must equal the shadow."""
        ctx = self.ctx
        ctx.at_end(lambda: quiescent(ctx))
        ctx.at_end(self._exit_all)
        ctx.at_end(lambda: drained(ctx))
        ctx.at_end(self._durable)

    def _exit_all(self) -> list[Violation]:
        for proc in self.ctx.machine.procs:
            proc.exit()
        return []

    def _durable(self) -> list[Violation]:
        with open(self.path, "rb") as f:
            on_disk = f.read()
        if on_disk == bytes(self.shadow):
            return []
        if len(on_disk) != len(self.shadow):
            return [
                Violation(ACCOUNTING, f"the file is {len(on_disk)} bytes, not {len(self.shadow)}")
            ]
        off = next(
            i
            for i in range(0, len(on_disk), SLOT)
            if on_disk[i : i + SLOT] != self.shadow[i : i + SLOT]
        )
        return [
            Violation(
                DURABILITY,
                f"with every page written back the file holds "
                f"{on_disk[off : off + SLOT].hex()} at offset {off}, "
                f"but {self.shadow[off : off + SLOT].hex()} was written there",
            )
        ]

    # -- the access hook --------------------------------------------------------------
    def _on_access(self, owner: object, va: int, ppn: int, write: bool) -> None:
        if not isinstance(owner, Proc):
            return
        region = self._region(owner, va)
        allocator = self.ctx.machine.allocator
        who = f"{self._who()} ({'store' if write else 'load'} at {va:#x}, p{owner.pid})"
        if allocator.is_free(ppn):
            self.ctx.fail(MEMORY_SAFETY, f"{who} landed in free frame {ppn}")
        if region is None:
            return  # not a file region of this scenario
        page = allocator.pages[ppn]
        index = (va - region.base + region.foff) >> PGSHIFT
        own_copy = region.private and page.mapping is None and owner.anon.get(va >> PGSHIFT) is page
        if not own_copy and (page.mapping is not self.pm or page.index != index):
            self.ctx.fail(
                MEMORY_SAFETY,
                f"{who} landed in frame {ppn}, which holds page {page.index} of "
                f"{page.mapping.name if page.mapping is not None else 'nobody'}, not page "
                f"{index} of {self.pm.name}",
            )
        off = region.foff + (va - region.base)
        key = (owner.pid, va & ~(SLOT - 1))
        tid = self._tid()
        if write:
            pending = self._store.get(tid)
            if pending is not None and pending[0] == va:
                if region.private:
                    self.private[key] = pending[1]
                    self.copied.add((owner.pid, va >> PGSHIFT))
                else:
                    self.shadow[off : off + SLOT] = pending[1]
        else:
            if region.private and key in self.private:
                self._expect[tid] = self.private[key]
            elif region.private and (owner.pid, va >> PGSHIFT) in self.copied:
                self._expect.pop(tid, None)
            else:
                self._expect[tid] = bytes(self.shadow[off : off + SLOT])

    def _region(self, proc: Proc, va: int) -> Region | None:
        for r in self.regions:
            if r.proc is proc and r.base <= va < r.end:
                return r
        return None

    def _file_offset(self, proc: Proc, va: int) -> int:
        r = self._region(proc, va)
        if r is None:
            raise ValueError(f"{va:#x} is in no region this scenario mapped")
        return r.foff + (va - r.base)

    def _tid(self) -> int:
        task = self.ctx.sched.current_task()
        return task.tid if task is not None else -1

    def _who(self) -> str:
        task = self.ctx.sched.current_task()
        return task.name if task is not None else "the checker"
