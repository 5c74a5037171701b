"""mremap(2): grow, shrink or move a mapping, as Linux does (mm/mremap.c, as
of 6.16, whose checks come in the order below).

Part of Proc (kernel/proc.py).  Rules: the arguments are checked before any
lock is taken (check_mremap_params); then everything runs under vmr_lock,
following kernel/vmr.py (a new region is registered with its page map before
a PTE moves into it, the old one leaves only once its PTEs are gone) and
kernel/mm.py (PTEs change by single atomic operations).  A call that fails
part way leaves what Linux leaves (a MREMAP_FIXED target already unmapped
stays unmapped), every lock released.

Moving PTEs (`_move_ptes`, Linux's move_ptes): under pte_lock, each PTE of
the old range is exchanged for 0 and set at the new address, D bit and all,
and the process's own pages (private copies, anonymous memory) follow.
Until the old range is flushed, another core may still translate an old
address through its TLB to the page that moved; so the flush of the old
range comes before pte_lock is released, as Linux has done since
eb66ae030829 (2018, CVE-2018-18281).  Two switches on the MM put back the
kernels before it (check/scenarios/known/tlb.py):

    mremap_flush_dirty    5d1904204c99 (2016): flush before the unlock when a
                          dirty PTE moved.  Off, a writeback that finds the
                          page at its new address cleans it, and a store
                          through the stale dirty entry at the old one lands
                          in a clean page: lost.
    mremap_flush_in_lock  eb66ae030829 (2018): flush before the unlock
                          whenever a present PTE moved.  Off (with the first
                          on), a truncate that unmaps the page at its new
                          address frees it while a stale clean entry at the
                          old one still reads it.

Not modelled: MREMAP_DONTUNMAP (EINVAL here), the duplication of a shared
anonymous mapping with old_len 0 (EINVAL here; a shared file mapping is
duplicated, as on Linux), the size of shared anonymous memory (Linux's
shmem object keeps the size mmap gave it, so pages a grow adds past it are
SIGBUS there; zero-filled here), mseal, hugetlb, userfaultfd, the map count
limit.
"""

from __future__ import annotations

import errno

from pagemap.hw.memory import PGMASK, PGSHIFT, PGSIZE
from pagemap.hw.mmu import PTE_D, PTE_P
from pagemap.kernel.errors import (
    InvalidArgument,
    KernelBug,
    KernelError,
    NotMapped,
    OutOfMemory,
)
from pagemap.kernel.mm import USER_MIN, USER_TOP
from pagemap.kernel.mman import MAP_LOCKED
from pagemap.kernel.mmap import ADDRESS_WRAP, Mappings
from pagemap.kernel.owner import as_int, check_alive
from pagemap.kernel.radix import RADIX_MAX_INDEX
from pagemap.kernel.vmr import (
    VMR,
    find_vmr,
    insert_vmr,
    is_free,
    merge_around,
    overlapping,
    register,
    unregister,
)

MREMAP_MAYMOVE = 1
MREMAP_FIXED = 2
MREMAP_DONTUNMAP = 4

# Linux's TASK_SIZE on x86-64 (TASK_SIZE_MAX): one page short of 2**47, the
# last page kept unmapped as a guard.  mremap's checks use it.
TASK_SIZE = USER_TOP - PGSIZE


def page_align(n: int) -> int:
    """PAGE_ALIGN in an unsigned long: a length within a page of 2**64 wraps to 0."""
    return ((n + PGMASK) & ~PGMASK) % ADDRESS_WRAP


class Remapping(Mappings):
    """mremap(2), on this address space."""

    def mremap(
        self, old_addr: int, old_len: int, new_len: int, flags: int = 0, new_addr: int = 0
    ) -> int:
        """Resize [old_addr, old_addr + old_len) to `new_len` bytes, or move
        it, as Linux's mremap(2); the address where it now is.

        Shrinking unmaps the tail; growing extends in place if the region
        ends there and the room after it is free, else, with MREMAP_MAYMOVE,
        moves it to a free range; MREMAP_FIXED (with MREMAP_MAYMOVE) moves
        it to `new_addr`, unmapping what was there.  EINVAL for bad flags,
        alignment, a zero new length, a target overlapping the source;
        EFAULT when nothing is mapped at `old_addr` or the range to grow or
        move passes the end of its region; ENOMEM when it cannot grow in
        place and may not move, or no room is left; EPERM for a target
        below the lowest user address.
        """
        check_alive(self.exited, "mremap", self.pid)
        addr = as_int(old_addr, "mremap", "the old address")
        old_len = as_int(old_len, "mremap", "the old length")
        new_len = as_int(new_len, "mremap", "the new length")
        flags = as_int(flags, "mremap", "flags")
        new_addr = as_int(new_addr, "mremap", "the new address")
        if min(addr, old_len, new_len, flags, new_addr) < 0:
            raise InvalidArgument("mremap: an address, length or flags value is negative")
        old_len, new_len = page_align(old_len), page_align(new_len)
        self._check_mremap(addr, old_len, new_len, flags, new_addr)
        with self.vmr_lock:
            if flags & MREMAP_FIXED and old_len == new_len:
                return self._remap_move(addr, old_len, new_addr)
            vmr = self._prep(addr, old_len, new_len, bool(flags & MREMAP_FIXED))
            if flags & MREMAP_FIXED:
                base = self._remap_to(addr, old_len, new_addr, new_len)
            elif old_len >= new_len:
                if old_len > new_len:
                    self._shrink(addr, old_len, new_len)
                return addr
            else:
                base = self._expand(vmr, addr, old_len, new_len, flags)
        if vmr.flags & MAP_LOCKED and new_len > old_len:
            # A locked region that grew has its new pages faulted in, as
            # Linux's mremap populates them; outside vmr_lock, which a fault
            # takes (mmap's MAP_LOCKED does the same).
            self._populate(base + old_len, base + new_len, vmr.prot, vmr.flags)
        return base

    # -- the checks, before any lock ------------------------------------------------
    @staticmethod
    def _check_mremap(addr: int, old_len: int, new_len: int, flags: int, new_addr: int) -> None:
        """Linux's check_mremap_params, in its order."""
        if flags & ~(MREMAP_FIXED | MREMAP_MAYMOVE):
            raise InvalidArgument(
                f"mremap: flags {flags:#x} has bits other than MREMAP_MAYMOVE and MREMAP_FIXED "
                "(MREMAP_DONTUNMAP is not modelled)"
            )
        if addr & PGMASK:
            raise InvalidArgument(f"mremap: old address {addr:#x} is not page aligned")
        if not new_len:
            raise InvalidArgument("mremap: the new length is 0 (or wraps to it)")
        if new_len > TASK_SIZE or new_addr > TASK_SIZE - new_len:
            raise InvalidArgument(
                f"mremap: new length {new_len:#x} at {new_addr:#x} passes the top of user space"
            )
        if not flags & MREMAP_FIXED:
            return
        if new_addr & PGMASK:
            raise InvalidArgument(f"mremap: new address {new_addr:#x} is not page aligned")
        if not flags & MREMAP_MAYMOVE:
            raise InvalidArgument("mremap: MREMAP_FIXED without MREMAP_MAYMOVE")
        if addr + old_len > new_addr and new_addr + new_len > addr:
            raise InvalidArgument(
                f"mremap: the target {new_addr:#x}+{new_len:#x} overlaps the source "
                f"{addr:#x}+{old_len:#x}"
            )

    def _prep(self, addr: int, old_len: int, new_len: int, fixed: bool) -> VMR:
        """Linux's check_prep_vma: the region at `addr`, checked for what the
        call will do with it; vmr_lock held."""
        vmr = find_vmr(self.vmrs, addr)
        if vmr is None:
            raise KernelError(f"mremap: nothing is mapped at {addr:#x}", errno=errno.EFAULT)
        if not old_len and not vmr.shared:
            raise InvalidArgument("mremap: old length 0 duplicates only shared mappings")
        if not old_len and vmr.file is None:
            raise InvalidArgument(
                "mremap: duplicating shared anonymous memory (old length 0) is not modelled"
            )
        if not (fixed or new_len > old_len):
            return vmr  # neither moves nor grows: nothing more to check
        # A fixed move that shrinks moves only what it keeps: the tail it cuts
        # may pass the region's end (as on Linux 6.18).
        moving = min(old_len, new_len) if fixed else old_len
        if moving > vmr.end - addr:
            raise KernelError(
                f"mremap: {addr:#x}+{moving:#x} passes the end of its region at {vmr.end:#x}",
                errno=errno.EFAULT,
            )
        last = vmr.index_of(addr) + (new_len >> PGSHIFT) - 1
        if new_len != old_len and vmr.file is not None and last > RADIX_MAX_INDEX:
            raise InvalidArgument(f"mremap: {new_len:#x} bytes pass the largest file page")
        return vmr

    # -- shrink, grow, move ----------------------------------------------------------
    def _shrink(self, addr: int, old_len: int, new_len: int) -> None:
        """Unmap the tail, as munmap would (do_vmi_munmap's own check first)."""
        if addr + old_len > TASK_SIZE:
            raise InvalidArgument(f"mremap: {addr:#x}+{old_len:#x} passes the top of user space")
        self._unmap_locked(addr + new_len, addr + old_len)

    def _expand(self, vmr: VMR, addr: int, old_len: int, new_len: int, flags: int) -> int:
        """Grow in place when the region ends where the range does and the
        room after it is free; else move, if allowed.  vmr_lock held."""
        delta = new_len - old_len
        end = vmr.end + delta
        if vmr.end - addr == old_len and end <= TASK_SIZE and is_free(self.vmrs, vmr.end, end):
            # A new region for the whole, on the map before the old one leaves.
            grown = VMR(self, vmr.base, end, vmr.prot, vmr.flags, vmr.file, vmr.foff)
            register(grown)
            self.vmrs = [grown if v is vmr else v for v in self.vmrs]
            unregister(vmr)
            merge_around(self.vmrs, grown.base, grown.end)
            return addr
        if not flags & MREMAP_MAYMOVE:
            raise OutOfMemory(
                f"mremap: {addr:#x}+{old_len:#x} cannot grow to {new_len:#x} bytes in place "
                "and MREMAP_MAYMOVE was not given"
            )
        try:
            target = self._find_room(new_len)
        except NotMapped as exc:
            raise OutOfMemory(f"mremap: no room for {new_len:#x} bytes") from exc
        return self._move(vmr, addr, old_len, new_len, target)

    def _remap_to(self, addr: int, old_len: int, new_addr: int, new_len: int) -> int:
        """Linux's mremap_to: unmap the target, shrink the source if asked,
        move; vmr_lock held."""
        self._unmap_locked(new_addr, new_addr + new_len)
        vmr = find_vmr(self.vmrs, addr)
        if vmr is None:
            raise KernelError(f"mremap: nothing is mapped at {addr:#x}", errno=errno.EFAULT)
        if old_len > new_len:
            self._shrink(addr, old_len, new_len)
            old_len = new_len
            vmr = find_vmr(self.vmrs, addr)
            assert vmr is not None
        if new_addr < USER_MIN:
            raise KernelError(
                f"mremap: target {new_addr:#x} is below the lowest user address {USER_MIN:#x}",
                errno=errno.EPERM,
            )
        return self._move(vmr, addr, old_len, new_len, new_addr)

    def _remap_move(self, addr: int, length: int, new_addr: int) -> int:
        """Linux's remap_move (6.17): a MREMAP_FIXED move that keeps the size
        may span several regions; each moves in turn, the gaps between them
        kept.  EFAULT if nothing is mapped at `addr`."""
        end = addr + length
        result: int | None = None
        target, last_end = new_addr, 0
        while True:
            pieces = overlapping(self.vmrs, addr, end)
            if not pieces:
                break
            vmr = pieces[0]
            if result is None and vmr.base > addr:
                break  # a gap at the start of the range
            lo = max(vmr.base, addr)
            hi = min(end, vmr.end)
            offset = vmr.base - last_end if result is not None else 0
            last_end = vmr.end
            got = self._remap_to(lo, hi - lo, target + offset, hi - lo)
            result = got if result is None else result
            target = got + (hi - lo)
            addr = hi
        if result is None:
            raise KernelError(f"mremap: nothing is mapped at {addr:#x}", errno=errno.EFAULT)
        return result

    def _move(self, vmr: VMR, addr: int, old_len: int, new_len: int, new_addr: int) -> int:
        """Linux's move_vma: the new region first (registered before a PTE
        moves into it, so removal always finds the page), then the PTEs, then
        the old range unmapped (its PTEs are 0 by then); vmr_lock held."""
        foff = vmr.foff + (addr - vmr.base)
        moved = VMR(self, new_addr, new_addr + new_len, vmr.prot, vmr.flags, vmr.file, foff)
        register(moved)
        insert_vmr(self.vmrs, moved)
        if old_len:
            self._move_ptes(addr, addr + old_len, new_addr)
            self._unmap_locked(addr, addr + old_len)
        merge_around(self.vmrs, new_addr, new_addr + new_len)
        return new_addr

    def _move_ptes(self, lo: int, hi: int, new_lo: int) -> None:
        """Move the PTEs of [lo, hi) to new_lo, with our own pages there, and
        flush the old range; vmr_lock held (no fault installs meanwhile).

        The flush comes before pte_lock is released (see the module's
        docstring): a writeback or a truncate that takes pte_lock after us
        finds the page only at its new address, flushes only there, and must
        not meet a TLB entry for the old one (mremap-race; the mutant
        "mremap-flush-after-unlock" drops the lock first and is caught).
        """
        shift = (new_lo - lo) >> PGSHIFT
        vpn_lo, vpn_hi = lo >> PGSHIFT, hi >> PGSHIFT
        present = dirty = False
        with self.pte_lock:
            self.flush_tlb_batched_pending()
            table = self.page_table
            for vpn, word in table.ptes(vpn_lo, vpn_hi):
                old = word.swap(0)
                if not old:
                    continue
                present = present or bool(old & PTE_P)
                dirty = dirty or bool(old & PTE_D)
                if not table.pte(vpn + shift).cas(0, old):
                    raise KernelBug(f"p{self.pid}: mremap's target PTE was not empty")
            for vpn in self._owned_vpns(vpn_lo, vpn_hi):
                page = self.anon.pop(vpn)
                self.anon[vpn + shift] = page
                self._owner_changed(page)
            flushed = present and (self.mremap_flush_in_lock or (dirty and self.mremap_flush_dirty))
            if flushed:
                self.tlb_shootdown(lo, hi)
        if present and not flushed:
            # The kernels before the fixes, for check/scenarios/known/tlb.py:
            # the flush after the lock is dropped.
            self.tlb_shootdown(lo, hi)


__all__ = ["MREMAP_FIXED", "MREMAP_MAYMOVE", "Remapping", "page_align"]
