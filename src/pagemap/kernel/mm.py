"""A process's address space: its page table, VMR list, anonymous pages and
locks, and the operations on its PTEs that every caller shares.

MM is the state under Proc (kernel/proc.py), which adds the fault handler
(fault.py), the mapping calls (mmap.py) and user access (uaccess.py).  It is
what the page map's reverse map calls an AddressSpace (kernel/rmap.py).

Locks, outermost first:

    vmr_lock     the VMR list; held while a VMR is split, merged, added or
                 removed, and while a fault checks and installs its PTE
    pm.lock      a page map's VMR list and tree (taken by add_vmr/remove_vmr)
    pte_lock     the page table; removal takes it under pm.lock
    core busy    a core's instruction in flight (hw/mmu.py), innermost

Nothing sleeps under vmr_lock or pte_lock: a fault loads its page with no
lock held and re-checks its VMR afterwards.

PTEs change only by single atomic operations, never by a read and a write
back, because the MMU sets A and D in between.  Every D bit a PTE loses
becomes PG_DIRTY on its page in the same pte_lock critical section, after
the TLB shootdown (_clear_ptes, the one place that clears PTE bits over a
range): removal takes pte_lock before it frees a page, so it can never free a
dirty page whose D bit is in flight, and no store through a stale TLB entry
can land after PG_DIRTY is set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from pagemap.hw.memory import PGMASK, PGSHIFT
from pagemap.hw.mmu import MMU, PTE_D, PTE_P, PageTable, pte_ppn
from pagemap.kernel.mapcount import unshare
from pagemap.kernel.page import PG_DIRTY, Page, PageAllocator
from pagemap.kernel.vmr import VMR, find_vmr
from pagemap.sync.atomic import AtomicWord, StatCounter
from pagemap.sync.core import WRITE
from pagemap.sync.executor import Executor

# Lowest address mmap hands out or accepts (Linux's default mmap_min_addr).
USER_MIN = 0x10000
# Where mmap starts looking for room when not told where to map.
MMAP_BASE = 0x1000_0000
# One past the highest user address (47-bit user space, as on x86-64).
USER_TOP = 1 << 47

# Every PTE bit: clearing them all zeroes the PTE.
PTE_ALL = (1 << 64) - 1


class MM:
    """The address space of process `pid` (struct mm_struct's part of
    Akaros's struct proc).  Made through Machine.process(), as a Proc."""

    def __init__(
        self,
        pid: int,
        executor: Executor,
        allocator: PageAllocator,
        mmu: MMU,
        current_core: Callable[[], int],
    ) -> None:
        self.pid = pid
        self.executor = executor
        self.allocator = allocator
        self.mmu = mmu
        self.current_core = current_core
        self.vmr_lock = executor.spinlock(f"p{pid}.vmr_lock")
        self.pte_lock = executor.spinlock(f"p{pid}.pte_lock")
        self.page_table = PageTable(executor, pid, self)
        self.vmrs: list[VMR] = []  # sorted by base, never overlapping
        # vpn -> the anonymous page (zero-fill or private copy) this process owns there.
        self.anon: dict[int, Page] = {}
        # Every fault the handler saw, and those that waited for a page to be
        # read in; the rest are minor (cached pages, zero fill, spurious).
        self.faults = StatCounter()
        self.major_faults = StatCounter()
        # Set by exit(); every call of the process answers ESRCH after.
        self.exited = False
        # Published fixes, each on a switch that is on in the kernel as it is;
        # a scenario of `pagemap check --known` (check/scenarios/known/) turns
        # one off to put the bug back.  Each is read where its fix lives.
        self.flush_before_unlock = True  # 1cf35d47712d: _settle_dirty, _clear_ptes
        self.settle_keeps_dirty = True  # the seed's munmap/mprotect dropping D
        self.recheck_size_at_install = True  # d00806b18315: fault.py's _install
        self.mremap_flush_dirty = True  # 5d1904204c99: mremap.py's _move_ptes
        self.flush_batched_first = True  # 3ea277194daa: flush_tlb_batched_pending
        # Reclaim cleared PTEs here and deferred the flush (Linux's
        # mm->tlb_flush_batched, TTU_BATCH_FLUSH); read and set under pte_lock.
        self.tlb_flush_batched = False
        self.mremap_flush_in_lock = True  # eb66ae030829: mremap.py's _move_ptes
        self.fork_locks_vmas = True  # fb49c455323f: fork.py's Fork.fork
        self.gup_breaks_cow = True  # 17839856fd58: gup.py's _get_user_page
        self.foll_cow = True  # 19be0eaffa3a: gup.py's _get_user_page and _follow
        # Set by fork in parent and child: anonymous pages here may be shared
        # (kernel/mapcount.py), so dropping one lowers its map count.  A process
        # that never forked spends no atomic operation on map counts.
        self.cow_shared = False
        self.mkwrite_locks_page = True  # 79352894b285: kernel/mkwrite.py
        self.mkwrite_holds_lock = True  # b827e496c893: kernel/mkwrite.py
        # "wp": shared file pages are mapped read-only until a write fault
        # dirties them (kernel/mkwrite.py), and writeback write-protects them
        # (page_mkclean); "dbit": writable at once, D bits collected.  Set by
        # Machine.process().
        self.dirty_tracking = "dbit"

    def __repr__(self) -> str:
        return f"Proc({self.pid}, {len(self.vmrs)} VMRs, {len(self.anon)} anonymous pages)"

    # -- what the page map's reverse map needs (rmap.AddressSpace) ---------------------
    def ptes(self, va_lo: int, va_hi: int) -> list[AtomicWord]:
        """The PTE words that exist for pages in [va_lo, va_hi); words that
        were never used are skipped, words now 0 are not.  pte_lock held."""
        vpn_hi = (va_hi + PGMASK) >> PGSHIFT
        return [w for _, w in self.page_table.ptes(va_lo >> PGSHIFT, vpn_hi)]

    def pte_at(self, va: int) -> AtomicWord | None:
        """The PTE word for the page at `va`, if there has ever been one;
        pte_lock held."""
        return self.page_table.lookup(va >> PGSHIFT)

    def tlb_shootdown(self, lo: int | None = None, hi: int | None = None) -> None:
        """Flush this address space from every core's TLB: all of it (exit,
        the seed's batched removal), or only the pages of [lo, hi) (Linux's
        flush_tlb_range: what a caller that changed PTEs there needs)."""
        self.mmu.shootdown(self.pid, lo, hi)

    def flush_tlb_batched_pending(self) -> None:
        """Flush what reclaim left pending here (Linux's
        flush_tlb_batched_pending); pte_lock held.  Every path that changes
        PTEs over a range calls it first: one that finds a PTE reclaim
        already cleared changes nothing there and would skip its own flush,
        while another core may still store through the entry reclaim has not
        flushed yet (3ea277194daa; reclaim-batch, mutant
        batched-pending-not-flushed)."""
        if self.tlb_flush_batched and self.flush_batched_first:
            self.tlb_shootdown()
            self.tlb_flush_batched = False

    def collect_dirty(self, va_lo: int, va_hi: int) -> None:
        """Move the D bits in [va_lo, va_hi) to PG_DIRTY, for a writeback
        (msync, fsync) that must see the stores made through them.  Under
        write-protect tracking a page is dirty before any PTE of it is
        writable (kernel/mkwrite.py), so there is nothing to collect."""
        if self.dirty_tracking == "wp":
            return
        self._clear_ptes(va_lo, va_hi, PTE_D)

    def drop_private_copies(self, va_lo: int, va_hi: int) -> None:
        """Unmap and free our anonymous pages in [va_lo, va_hi): truncate
        calls it (through PageMap.drop_private_copies) for the private copies
        of pages past a file's new end."""
        vpn_lo, vpn_hi = va_lo >> PGSHIFT, va_hi >> PGSHIFT
        with self.vmr_lock, self.pte_lock:
            self.flush_tlb_batched_pending()
            vpns = self._owned_vpns(vpn_lo, vpn_hi)
            for vpn in vpns:
                word = self.page_table.lookup(vpn)
                if word is not None:
                    word.swap(0)  # an anonymous page: no D bit anyone needs
            copies = self._flush_then_disown(vpns)
        for page in copies:
            self.allocator.decref(page)

    def _flush_then_disown(self, vpns: list[int]) -> list[Page]:
        """Shoot down, then take our pages at `vpns` out of self.anon, to be
        freed by the caller; PTEs already cleared, pte_lock held.

        In that order, as Linux's zap frees its pages only in tlb_finish_mmu,
        after the flush: a store another core translated before the PTE was
        cleared may land in the page until the shootdown has reached that
        core, and the page must still be ours then (truncate-private: the
        user's store is in flight while truncate clears its PTE; the mutant
        "truncate frees private copies before the flush" is caught)."""
        if vpns:
            self.tlb_shootdown(min(vpns) << PGSHIFT, (max(vpns) + 1) << PGSHIFT)
        return self._disown(vpns)

    # -- PTEs over a range ----------------------------------------------------------
    def _clear_ptes(self, lo: int, hi: int, bits: int, free_owned: bool = False) -> list[Page]:
        """Clear `bits` (D among them) in every PTE in [lo, hi), shoot down,
        and pass the D bits of file pages to PG_DIRTY; with `free_owned`, take
        our anonymous pages there out of self.anon and hand them back, to be
        freed once nobody can reach them (after this shootdown).

        munmap clears every bit (_zap), mprotect W and D, msync and fsync D
        alone.  One atomic fetch_and a PTE: the MMU may set D until the very
        instant it is cleared (msync-store and munmap-remove race stores
        against it; the munmap-drops-dirty mutant, which loses the bit, is
        caught).  A PTE is read first, sparing a locked write to one without
        the bits (most, when msync looks for D), unless every bit goes (most
        PTEs munmap zeroes have some).
        """
        vpn_lo, vpn_hi = lo >> PGSHIFT, hi >> PGSHIFT
        keep = ~bits & PTE_ALL
        look_first = bool(keep)
        with self.pte_lock:
            self.flush_tlb_batched_pending()
            dirty: list[Page] = []
            changed = 0
            for vpn, word in self.page_table.ptes(vpn_lo, vpn_hi):
                if look_first and not word.load() & bits:
                    continue
                old = word.fetch_and(keep)
                if not old & bits:
                    continue  # a PTE munmap found already zero
                changed += 1
                if old & PTE_D:
                    page = self.allocator.pages[pte_ppn(old)]
                    if page is not self.anon.get(vpn):
                        dirty.append(page)
            owned = self._owned_vpns(vpn_lo, vpn_hi) if free_owned else []
            if changed or owned:
                self._settle_dirty(dirty, lo, hi)
            # Ours until after the shootdown (_flush_then_disown says why).
            disowned = self._disown(owned)
        if (changed or owned) and not self.flush_before_unlock:
            # 1cf35d47712d's bug, for check/scenarios/known: the flush comes
            # after the lock is dropped, so a writeback may clean the page in
            # between and a store through another core's stale entry is lost.
            self.tlb_shootdown(lo, hi)
        return disowned

    def _modify_ptes(self, lo: int, hi: int) -> None:
        """Pass every present PTE in [lo, hi) through a protection change
        that keeps what it allows, as Linux's change_pte_range does (since
        2.6.26): ptep_modify_prot_start takes the PTE and leaves it not
        present, ptep_modify_prot_commit puts the new one; under pte_lock.
        Our PTEs have no bit such a change alters (no NX), so the new PTE is
        the old one with every bit the MMU set before it was taken.

        In between the PTE is not present for an instant: a fault waits for
        pte_lock, and so must any walk that would act on the PTE
        (page_mkclean reads it only under the lock: 479db0bf408e, the zoo's
        known-mkclean-skip)."""
        with self.pte_lock:
            for _, word in self.page_table.ptes(lo >> PGSHIFT, hi >> PGSHIFT):
                if not word.load() & PTE_P:
                    continue
                old = word.swap(0)  # ptep_modify_prot_start: nothing can set D now
                word.store(old)  # ptep_modify_prot_commit

    def _zap(self, lo: int, hi: int, free_owned: bool) -> list[Page]:
        """Zero every PTE in [lo, hi) (munmap, PROT_NONE); see _clear_ptes."""
        return self._clear_ptes(lo, hi, PTE_ALL, free_owned)

    def _settle_dirty(
        self, dirty: list[Page], lo: int | None = None, hi: int | None = None
    ) -> None:
        """Shoot down [lo, hi) (all of the address space if not given), then
        mark `dirty` PG_DIRTY; pte_lock held.

        After the shootdown, not before: a store through a TLB entry that
        still has D cached lands in the frame up to the shootdown, and a
        writeback (fsync) that cleaned the page in between must not be the
        last word on it.  The pages cannot be freed meanwhile: removal zeroes
        PTEs under pte_lock before it frees, and our VMR is still registered.
        ("munmap and mprotect drop D bits" in tests/check/test_mm_mutants.py
        forgets PG_DIRTY here and is caught.)
        """
        if self.flush_before_unlock:
            self.tlb_shootdown(lo, hi)
        if not self.settle_keeps_dirty:
            return  # the seed's munmap and mprotect: the D bits go nowhere
        for page in dirty:
            page.flags.fetch_or(PG_DIRTY)

    def _disown(self, vpns: list[int]) -> list[Page]:
        """Take our pages at `vpns` out of self.anon; pte_lock held."""
        pages = [self.anon.pop(v) for v in vpns]
        for page in pages:
            self._owner_changed(page)
            if self.cow_shared:
                unshare(page)  # fork may have shared it (kernel/fork.py)
        return pages

    def _owner_changed(self, page: Page) -> None:
        """A page became, or stopped being, one of our own: name its frame in
        this step's footprint.  The memory-safety oracle judges an access to
        the frame by who owns it, so an access racing the change is a
        dependence DPOR reorders (truncate-private; check/footprints.py sees
        only the machine's words and frames, not this dict)."""
        self.executor.touch(page.ppn, WRITE)

    def _owned_vpns(self, vpn_lo: int, vpn_hi: int) -> list[int]:
        if vpn_hi - vpn_lo <= len(self.anon):
            return [v for v in range(vpn_lo, vpn_hi) if v in self.anon]
        return sorted(v for v in self.anon if vpn_lo <= v < vpn_hi)

    # -- the VMR list, as tests name it ---------------------------------------------------
    # The kernel calls kernel/vmr.py directly; tests/kernel/test_removal_mapped.py
    # looks a region up by this name.
    def _find_vmr(self, va: int) -> VMR | None:
        return find_vmr(self.vmrs, va)

    # -- for oracles -------------------------------------------------------------------
    def check_quiescent(self) -> list[str]:
        """What is wrong with this address space when no task runs: a lock
        left held, a PTE or TLB entry naming a free frame, or a PTE where no
        region is mapped (a fault that installed after munmap took its region:
        the munmap-fault scenario)."""
        problems: list[str] = []
        if self.vmr_lock.held or self.pte_lock.held:
            problems.append(f"p{self.pid}: its VMR or page-table lock is still held")
        for vpn, _, ppn in self.mapped_ppns():
            if self.allocator.is_free(ppn):
                problems.append(
                    f"p{self.pid}: the PTE at {vpn << PGSHIFT:#x} names free frame {ppn}"
                )
            if find_vmr(self.vmrs, vpn << PGSHIFT) is None:
                problems.append(
                    f"p{self.pid}: a PTE maps {vpn << PGSHIFT:#x} (frame {ppn}), where no "
                    "region is mapped"
                )
        for core, vpn, ppn in self.mmu.cached_ppns(self.pid):
            if self.allocator.is_free(ppn):
                problems.append(
                    f"p{self.pid}: core {core}'s TLB maps {vpn << PGSHIFT:#x} to free frame {ppn}"
                )
        return problems

    def mapped_ppns(self) -> Iterator[tuple[int, int, int]]:
        """(vpn, pte, ppn) for every non-zero PTE; for oracles at quiescence."""
        for vpn, word in self.page_table.ptes(0, USER_TOP >> PGSHIFT):
            if word.value:
                yield vpn, word.value, pte_ppn(word.value)


__all__ = ["MM", "MMAP_BASE", "USER_MIN", "USER_TOP"]
