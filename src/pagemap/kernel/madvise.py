"""madvise, mlock and munlock, as Linux has them.

Part of Proc (kernel/proc.py).  Rules are mmap.py's: each call checks its
arguments as Linux does before it touches anything, then works under
vmr_lock, region by region; a region that refuses stops the call there with
Linux's error, the regions before it keep what was done to them, and every
lock is released.  PTEs are cleared through MM._zap alone (D bits of shared
file pages become PG_DIRTY, anonymous pages are freed after the flush), and
lock flags change by building new VMRs, registered before the old ones leave
their page maps (kernel/vmr.py).  Pages are populated (MADV_WILLNEED, mlock)
with no lock held, as a fault may sleep.

- MADV_DONTNEED drops the PTEs and the private copies (anonymous pages) of
  the range: the next access refaults from the file or as zeros.  EINVAL on
  a MAP_LOCKED region, as Linux refuses VM_LOCKED.
- MADV_WILLNEED reads a file region's pages into the page cache (up to the
  end of the file); nothing for anonymous memory (Linux's swap-in, with no
  swap here).
- MADV_REMOVE punches a hole in a shared writable file mapping: EINVAL for a
  MAP_LOCKED region or anonymous memory, EACCES unless MAP_SHARED and
  PROT_WRITE, and EOPNOTSUPP since no file here can punch holes (Linux's
  vfs_fallocate on a filesystem without FALLOC_FL_PUNCH_HOLE).
- MADV_NORMAL, MADV_RANDOM and MADV_SEQUENTIAL are accepted and change
  nothing (they tune readahead, which the model has not); any other advice,
  including Linux's that the model does not have, is EINVAL.
- Over a gap in the range every call does the rest, then answers ENOMEM.

mlock(addr, len) rounds the start down to its page, as Linux does (madvise
wants it aligned), marks the regions MAP_LOCKED (removal passes them over)
and faults their pages in, private writable ones for writing, as MAP_LOCKED
does at mmap; munlock clears the mark.  ENOMEM for a gap, EINVAL for a range
that wraps.
"""

from __future__ import annotations

import errno

from pagemap.hw.memory import PGMASK, PGSHIFT
from pagemap.kernel.errors import AccessDenied, InvalidArgument, KernelError, NotMapped
from pagemap.kernel.mman import MAP_LOCKED, MAP_SHARED, PROT_WRITE
from pagemap.kernel.mmap import ADDRESS_WRAP, Mappings, page_round_up
from pagemap.kernel.owner import as_int, check_alive
from pagemap.kernel.vmr import (
    VMR,
    find_vmr,
    merge_around,
    overlapping,
    register,
    split_outside,
    unregister,
    vmr_base,
)

MADV_NORMAL = 0
MADV_RANDOM = 1
MADV_SEQUENTIAL = 2
MADV_WILLNEED = 3
MADV_DONTNEED = 4
MADV_REMOVE = 9

_NO_OPS = (MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL)
_ADVICE = (*_NO_OPS, MADV_WILLNEED, MADV_DONTNEED, MADV_REMOVE)


class Advice(Mappings):
    """madvise(2), mlock(2) and munlock(2), on this address space."""

    def madvise(self, addr: int, length: int, advice: int) -> None:
        """Advise the kernel about [addr, addr + length), as Linux's madvise(2)
        (see the module docstring for each advice and its errors)."""
        check_alive(self.exited, "madvise", self.pid)
        advice = as_int(advice, "madvise", "the advice")
        if advice not in _ADVICE:
            raise InvalidArgument(f"madvise: advice {advice} is not one this kernel knows")
        lo, hi = self._check_range("madvise", addr, length)
        if hi >= ADDRESS_WRAP:
            raise InvalidArgument(f"madvise: {addr:#x}+{length:#x} wraps past 2**64")
        if lo == hi:
            return
        readahead: list[tuple[VMR, int, int]] = []
        with self.vmr_lock:
            hole = self._advise_locked(lo, hi, advice, readahead)
        for vmr, a, b in readahead:
            self._read_ahead(vmr, a, b)
        if hole is not None:
            raise NotMapped(f"madvise: nothing is mapped at {hole:#x}")

    def _advise_locked(
        self, lo: int, hi: int, advice: int, readahead: list[tuple[VMR, int, int]]
    ) -> int | None:
        """Apply `advice` to each region in [lo, hi); the first unmapped
        address, if any (ENOMEM once the rest is done); vmr_lock held."""
        hole: int | None = None
        pos = lo
        for vmr in overlapping(self.vmrs, lo, hi):
            if vmr.base > pos and hole is None:
                hole = pos
            a, b = max(lo, vmr.base), min(hi, vmr.end)
            if advice == MADV_DONTNEED:
                self._dontneed(vmr, a, b)
            elif advice == MADV_REMOVE:
                self._check_remove(vmr)
            elif advice == MADV_WILLNEED and vmr.file is not None:
                readahead.append((vmr, a, b))
            pos = b
        if pos < hi and hole is None:
            hole = pos
        return hole

    def _dontneed(self, vmr: VMR, lo: int, hi: int) -> None:
        """MADV_DONTNEED of [lo, hi) in `vmr`; vmr_lock held."""
        if vmr.flags & MAP_LOCKED:
            raise InvalidArgument(
                f"madvise: MADV_DONTNEED of the locked region at {vmr.base:#x}-{vmr.end:#x}"
            )
        freed = self._zap(lo, hi, free_owned=True)
        for page in freed:
            self.allocator.decref(page)

    @staticmethod
    def _check_remove(vmr: VMR) -> None:
        """MADV_REMOVE of part of `vmr`: Linux's checks in madvise_remove's order."""
        if vmr.flags & MAP_LOCKED:
            raise InvalidArgument(f"madvise: MADV_REMOVE of the locked region at {vmr.base:#x}")
        if vmr.file is None:
            raise InvalidArgument(f"madvise: MADV_REMOVE of anonymous memory at {vmr.base:#x}")
        if not vmr.flags & MAP_SHARED or not vmr.prot & PROT_WRITE:
            raise AccessDenied(
                f"madvise: MADV_REMOVE needs a shared writable mapping; {vmr.base:#x} is not one"
            )
        raise KernelError(
            "madvise: MADV_REMOVE: this file cannot punch holes", errno=errno.EOPNOTSUPP
        )

    def _read_ahead(self, vmr: VMR, lo: int, hi: int) -> None:
        """Read the file pages [lo, hi) of `vmr` maps into the page cache, up
        to the end of the file; errors are dropped, as readahead's are."""
        mapping = vmr.mapping
        assert mapping is not None and vmr.file is not None
        end = (vmr.file.size + PGMASK) >> PGSHIFT
        for index in range(vmr.index_of(lo), min(vmr.index_of(hi - 1) + 1, end)):
            try:
                page, _ = mapping.lookup(index)
            except OSError:
                continue
            mapping.put_page(page)

    # -- mlock and munlock -------------------------------------------------------------
    def mlock(self, addr: int, length: int) -> None:
        """Lock [addr, addr + length) in memory, as Linux's mlock(2)."""
        lo, hi = self._lock_range("mlock", addr, length)
        if lo == hi:
            return
        with self.vmr_lock:
            try:
                changed = self._set_locked("mlock", lo, hi, MAP_LOCKED)
            finally:
                merge_around(self.vmrs, lo, hi)
        for vmr, a, b in changed:
            self._populate(a, b, vmr.prot, vmr.flags)

    def munlock(self, addr: int, length: int) -> None:
        """Unlock [addr, addr + length), as Linux's munlock(2)."""
        lo, hi = self._lock_range("munlock", addr, length)
        if lo == hi:
            return
        with self.vmr_lock:
            try:
                self._set_locked("munlock", lo, hi, 0)
            finally:
                merge_around(self.vmrs, lo, hi)

    def _lock_range(self, op: str, addr: int, length: int) -> tuple[int, int]:
        """Linux's do_mlock rounding, in a size_t: the start down to its
        page, the length up with it (a length that rounds up to 2**64 is 0,
        an empty range); EINVAL for an address or length outside a size_t,
        or an end that wraps past 2**64."""
        check_alive(self.exited, op, self.pid)
        addr, length = as_int(addr, op, "the address"), as_int(length, op, "the length")
        if not 0 <= addr < ADDRESS_WRAP or not 0 <= length < ADDRESS_WRAP:
            raise InvalidArgument(f"{op}: {addr:#x}+{length} is not a range of addresses")
        lo = addr & ~PGMASK
        hi = lo + page_round_up(length + (addr & PGMASK)) % ADDRESS_WRAP
        if hi >= ADDRESS_WRAP:
            raise InvalidArgument(f"{op}: {addr:#x}+{length:#x} wraps past 2**64")
        return lo, hi

    def _set_locked(self, op: str, lo: int, hi: int, locked: int) -> list[tuple[VMR, int, int]]:
        """Give each region in [lo, hi) the lock flag `locked`; ENOMEM at the
        first gap, the regions before it changed; the ranges newly locked,
        with their new regions.  vmr_lock held."""
        changed: list[tuple[VMR, int, int]] = []
        pos = lo
        while pos < hi:
            vmr = find_vmr(self.vmrs, pos)
            if vmr is None:
                raise NotMapped(f"{op}: nothing is mapped at {pos:#x}")
            end = min(hi, vmr.end)
            if vmr.flags & MAP_LOCKED != locked:
                piece = VMR(
                    self,
                    pos,
                    end,
                    vmr.prot,
                    vmr.flags & ~MAP_LOCKED | locked,
                    vmr.file,
                    vmr.foff + (pos - vmr.base),
                )
                pieces = [*split_outside(vmr, pos, end), piece]
                for p in pieces:
                    register(p)
                self.vmrs = sorted([v for v in self.vmrs if v is not vmr] + pieces, key=vmr_base)
                unregister(vmr)
                if locked:
                    changed.append((piece, pos, end))
            pos = end
        return changed


__all__ = [
    "MADV_DONTNEED",
    "MADV_NORMAL",
    "MADV_RANDOM",
    "MADV_REMOVE",
    "MADV_SEQUENTIAL",
    "MADV_WILLNEED",
    "Advice",
]
