"""A file for scenarios with files and mappings, wired to the oracles.

`ShadowFile` makes a small file of stamped pages for each schedule: in memory
(check/memdisk.py's MemInode) by default, or a real host file (in the
exploration's scratch directory, rewritten each schedule) for scenarios about
host files.  Pages come from the Machine's real page map.  It keeps the
file's shadow (oracles/coherence.py) and installs the Machine's access
hook, so that for every user load and store, just before its bytes land (no
scheduling point in between):

- memory safety: the frame is not free, and the page in it is the page the
  region maps at that address (or the process's own private copy);
- coherence: a store's bytes go into the shadow at that instant, and a
  load's expected bytes are taken from it then, to be compared when the load
  returns.

Every 8-byte slot has one writer, so "the latest store" is always defined.
Slots written with pwrite are checked by their writer after it returns and
by the durability oracle at the end, since a pwrite's bytes land with no
hook to time them.

`fsync` and `msync` sync the file and judge, as they return, that every
store that had landed when they began is in the backing store
(oracles/synced.py), not only at the end; and every sync of any file of the
inode reports the writeback errors recorded since that file last saw one
(oracles/errseq.py).

At the end: accounting at quiescence; every process exits (passing its dirty
bits on); no frame leaked; nothing written lost (the durability oracle).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass

from pagemap.check.context import RunContext
from pagemap.check.memdisk import MemInode
from pagemap.hw.memory import PGSHIFT, PGSIZE
from pagemap.kernel.mman import MAP_PRIVATE
from pagemap.kernel.proc import Proc
from pagemap.kernel.vfs import File
from pagemap.oracles import COHERENCE, DURABILITY, Violation
from pagemap.oracles.accounting import no_leak, quiescent
from pagemap.oracles.coherence import SLOT, Shadow, describe, stamp
from pagemap.oracles.durability import cached_page_bytes, nothing_lost
from pagemap.oracles.errseq import ErrseqOracle
from pagemap.oracles.synced import synced

__all__ = ["SLOT", "Region", "ShadowFile", "initial_bytes"]


@functools.cache
def initial_bytes(pages: int) -> bytes:
    """The file every schedule starts from (a pure function, so computed once)."""
    return b"".join(stamp(p, s, 0) for p in range(pages) for s in range(PGSIZE // SLOT))


@dataclass
class Region:
    proc: Proc
    base: int
    end: int
    foff: int
    private: bool


class ShadowFile:
    def __init__(self, ctx: RunContext, pages: int, name: str = "file", host: bool = False) -> None:
        self.ctx = ctx
        self.name = name
        data = initial_bytes(pages)
        self.host_path: str | None = None
        if host:
            self.host_path = os.path.join(ctx.scratch(), name)
            with open(self.host_path, "wb") as f:
                f.write(data)
            self.file: File = ctx.machine.open(self.host_path, "r+")
            io = getattr(self.file.inode, "io", None)
            if io is not None:
                ctx.cleanup(io.close)
                # Every fault a task injects must reach a caller or stay pending
                # on a dirty page; judged before any end check writes back.
                io.faults.on_take = ctx.faults.took
                ctx.at_end(lambda: ctx.faults.verdict(self._dirty_at))
        else:
            machine = ctx.machine
            inode = MemInode(machine.executor, machine.page_map, name, data)
            self.inode = inode
            self.file = File(inode, name, "r+", True, True)
        self.pm = self.file.mapping
        # Every fsync and msync reports the writeback errors recorded since
        # its file last saw one (oracles/errseq.py); files opened later too.
        self.errseq = ErrseqOracle(ctx.fail, name)
        wb_err = self.pm.wb_err
        wb_err.on_record = self.errseq.record
        wb_err.on_sample = self.errseq.sample
        wb_err.on_check = self.errseq.check
        wb_err.on_seen = self.errseq.seen
        self.shadow = Shadow(data)
        self.private: dict[tuple[int, int], bytes] = {}  # (pid, va) -> a private store
        self.written: list[bytes] = []  # every stamp pwrite wrote, in order
        self.stored_by: dict[bytes, str] = {}  # a stamp -> the task that stored it
        # (pid, vpn) of private copies: their other slots are a snapshot, not the file.
        self.copied: set[tuple[int, int]] = set()
        self.regions: list[Region] = []
        # task id -> what its store is about to write, or what its load must see.
        self._store: dict[int, tuple[int, bytes]] = {}
        self._expect: dict[int, bytes] = {}
        # task id -> the smallest size the file had during that task's msync
        # or fsync: slots cut meanwhile are not judged when it returns.
        self._syncing: dict[int, int] = {}
        ctx.machine.on_access = self._on_access

    def _dirty_at(self, offset: int) -> bool:
        cached = cached_page_bytes(self.pm, offset // PGSIZE)
        return cached is not None and cached[1]

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
        data = self.shadow.next_stamp(self._file_offset(proc, va))
        self.stored_by[data] = self._who()
        tid = self.ctx.tid()
        self._store[tid] = (va, data)
        try:
            proc.store(va, data)
        finally:
            self._store.pop(tid, None)

    def load(self, proc: Proc, va: int) -> None:
        """Load the slot at `va` and check it is the latest store to it."""
        got = proc.load(va, SLOT)
        want = self._expect.pop(self.ctx.tid(), None)
        if want is not None and got != want:
            self.ctx.fail(
                COHERENCE,
                f"{self.ctx.who()} loaded {describe(got)} at {va:#x} (p{proc.pid}) but the "
                f"latest store there wrote {describe(want)}",
            )

    def pwrite(self, offset: int) -> None:
        data = self.shadow.next_stamp(offset)
        self.stored_by[data] = self._who()
        self.written.append(data)
        self.file.pwrite(data, offset)
        self.shadow.write(offset, data)
        self.pread(offset)

    def pread(self, offset: int) -> None:
        """Read a slot with pread; it must hold the latest write (call only for
        slots this task writes, or that nobody writes)."""
        got = self.file.pread(SLOT, offset)
        want = self.shadow.expect(offset, SLOT)
        if got != want:
            self.ctx.fail(
                COHERENCE,
                f"{self.ctx.who()} read {describe(got)} at offset {offset} but the file "
                f"holds {describe(want)}",
            )

    def truncate(self, size: int) -> None:
        self.file.truncate(size)
        self.shadow.truncate(size)
        for tid, cut in self._syncing.items():
            self._syncing[tid] = min(cut, size)

    def fsync(self) -> None:
        """fsync the file; as it returns, every store that had landed when it
        began is in the backing store (oracles/synced.py)."""
        self._synced("fsync", [(0, self.shadow.size)], self.file.fsync)

    def msync(self, proc: Proc, va: int, length: int) -> None:
        """msync [va, va + length) of `proc`; as it returns, every store to the
        file that had landed in the shared regions there when it began is in
        the backing store (oracles/synced.py)."""
        spans = [
            (r.foff + max(va, r.base) - r.base, min(va + length, r.end) - max(va, r.base))
            for r in self.regions
            if r.proc is proc and not r.private and r.base < va + length and va < r.end
        ]
        self._synced(
            f"msync of {va:#x}+{length:#x} (p{proc.pid})", spans, lambda: proc.msync(va, length)
        )

    def _synced(self, call: str, spans: list[tuple[int, int]], sync: Callable[[], None]) -> None:
        before = [(off, self.shadow.expect(off, n)) for off, n in spans]
        tid = self.ctx.tid()
        self._syncing[tid] = self.shadow.size
        try:
            sync()
        finally:
            cut = self._syncing.pop(tid)
        # Only a call that returned: one that raised made no promise.
        for off, data in before:
            problem = synced(
                f"{self.ctx.who()}'s {call}",
                self.name,
                off,
                data,
                self._stored(off, len(data)),
                cut,
            )
            if problem is not None:
                self.ctx.fail(problem.oracle, problem.message)

    def _stored(self, offset: int, n: int) -> bytes:
        """The `n` bytes at `offset` of the backing store, as it holds them now."""
        if self.host_path is not None:
            with open(self.host_path, "rb") as f:
                f.seek(offset)
                return f.read(n)
        return bytes(self.inode.data[offset : offset + n])

    def no_stale_translation(self) -> None:
        self.ctx.memory.no_stale_translation()

    # -- the end --------------------------------------------------------------------
    def end_checks(self) -> None:
        ctx = self.ctx
        ctx.at_end(lambda: quiescent(ctx.machine))
        ctx.at_end(self._exit_all)
        ctx.at_end(lambda: no_leak(ctx.machine))
        ctx.at_end(self._durable)

    def _exit_all(self) -> list[Violation]:
        for proc in self.ctx.machine.procs:
            proc.exit()
        return []

    def _who(self) -> str:
        task = self.ctx.sched.current_task()
        return task.name if task is not None else "the set-up"

    def describe(self, data: bytes) -> str:
        """A slot's stamp, and the task that stored it ("store's v2 of ...")."""
        who = self.stored_by.get(data)
        return f"{who}'s {describe(data)}" if who else describe(data)

    def _durable(self) -> list[Violation]:
        size = self.shadow.size  # len(self.shadow.data), without making the bytes
        pages = (size + PGSIZE - 1) >> PGSHIFT
        lost = nothing_lost(
            self.name, self.pm, pages, self.backing, self.shadow.page, describe=self.describe
        )
        if self.host_path is not None:
            # The kernel's size and the host's must agree once writeback is
            # done: a write past the end (a writepage that raced truncate, the
            # truncate-store scenario) grows the host file back.
            on_host = os.path.getsize(self.host_path)
            if on_host > size:
                lost.append(
                    Violation(
                        DURABILITY,
                        f"{self.name} is {on_host} bytes on the host, but the file was cut "
                        f"to {size}: a write landed past its end",
                    )
                )
        return lost

    def backing(self, index: int) -> bytes:
        """Page `index` as the backing store holds it now (zeros past its end)."""
        start = index * PGSIZE
        if self.host_path is not None:
            with open(self.host_path, "rb") as f:
                f.seek(start)
                got = f.read(PGSIZE)
        else:
            got = bytes(self.inode.data[start : start + PGSIZE])
        return got + bytes(PGSIZE - len(got))

    # -- the access hook --------------------------------------------------------------
    def _on_access(self, owner: object, va: int, ppn: int, write: bool) -> None:
        if not isinstance(owner, Proc):
            return
        region = self._region(owner, va)
        if region is None:
            # Not a file region of this scenario: anonymous memory, or another file.
            self.ctx.memory.access_anywhere(owner, va, ppn, write)
            return
        index = (va - region.base + region.foff) >> PGSHIFT
        own = owner.anon.get(va >> PGSHIFT) if region.private else None
        self.ctx.memory.landed(owner.pid, va, write, ppn, (self.pm, index), own)
        off = region.foff + (va - region.base)
        key = (owner.pid, va & ~(SLOT - 1))
        tid = self.ctx.tid()
        if write:
            pending = self._store.get(tid)
            if pending is not None and pending[0] == va:
                if region.private:
                    self.private[key] = pending[1]
                    self.copied.add((owner.pid, va >> PGSHIFT))
                else:
                    self.shadow.write(off, pending[1])
        elif region.private and key in self.private:
            self._expect[tid] = self.private[key]
        elif region.private and (owner.pid, va >> PGSHIFT) in self.copied:
            self._expect.pop(tid, None)
        else:
            self._expect[tid] = self.shadow.expect(off, SLOT)

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
