"""How pages leave a page map: pm_remove_contig, and truncate_pages.

Part of PageMap: kernel/pagemap.py mixes this class in, sets its fields and
writes single pages back for it.  The seed's removal protocol, pass by pass:

    1  mark        set REMOVAL on every unreferenced, unpinned page in range
    2  unmap       clear P in every PTE of a marked page, in every region
       shootdown   one per process, PTR_ARR_LEN processes at a time
    3  collect D   zero those PTEs, moving D to PG_DIRTY (only now is D final)
    4  write back  dirty marked pages, PTR_ARR_LEN at a time, map lock dropped
    5  free        every page whose REMOVAL is still set: nobody used it since

Rules: one remover at a time (the `removal` word); the remover holds the map
lock for every pass but the writes of pass 4.  A user that finds a page
(PageMap._find_page) clears its REMOVAL in the CAS that takes its reference,
which is how any use, at any point of the protocol, saves the page.  The
page's own PG_REMOVAL bit is a convenience for the PTE passes, not a lock.
Pages of MAP_LOCKED regions are never marked.  A failed writepage keeps its
page, dirty and cached; the error is raised once the range is done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pagemap.hw.mmu import PTE_D, PTE_P, pte_ppn
from pagemap.kernel.errors import InvalidArgument
from pagemap.kernel.mman import MAP_LOCKED
from pagemap.kernel.owner import as_int
from pagemap.kernel.page import (
    PG_DIRTY,
    PG_REMOVAL,
    Page,
    PageAllocator,
)
from pagemap.kernel.radix import ALL_PAGES, RadixTree
from pagemap.kernel.rmap import AddressSpace, VMRegion, mapped_spans, vmr_has_page_idx
from pagemap.kernel.slot import (
    PM_PPN_MASK,
    PM_REMOVAL,
    slot_check_refcnt,
    slot_check_removal,
    slot_set_ppn,
    slot_set_removal,
)
from pagemap.sync.atomic import AtomicWord, StatCounter
from pagemap.sync.executor import Executor
from pagemap.sync.locks import SpinLock

# How many processes, or dirty pages, removal batches before acting (PTR_ARR_LEN).
PTR_ARR_LEN = 10


@dataclass
class PageMapStats:
    hits: int = 0  # lookups that found the page cached (under the map lock)
    misses: int = 0  # pages inserted to be read (under the map lock)
    removals: int = 0  # remove_contig calls that ran the protocol (one remover)
    removed: int = 0  # pages freed by them
    writeback_errors: int = 0  # pages kept because their writeback failed
    writebacks: StatCounter = field(default_factory=StatCounter)  # pages written


class Removal:
    """The page-out half of struct page_map."""

    # What removal uses of its page map: fields PageMap.__init__ sets, and
    # the one-page writeback that PageMap.writeback shares.
    name: str
    executor: Executor
    allocator: PageAllocator
    tree: RadixTree
    num_pages: int
    lock: SpinLock
    vmrs: list[VMRegion]
    removal: AtomicWord
    stats: PageMapStats

    if TYPE_CHECKING:

        def _writeback_page(self, page: Page) -> bool: ...

    def _slot_get_page(self, slot_val: int) -> Page | None:
        """pm_slot_get_page: the page a slot word names, or None."""
        ppn = slot_val & PM_PPN_MASK
        return self.allocator.pages[ppn] if ppn else None

    def _check_range(self, index: int, nr_pages: int) -> tuple[int, int]:
        index = as_int(index, f"{self.name}: page range", "the first index")
        nr_pages = as_int(nr_pages, f"{self.name}: page range", "the number of pages")
        if index < 0 or nr_pages < 0:
            raise InvalidArgument(
                f"{self.name}: page range start {index}, length {nr_pages}: neither may be negative"
            )
        # The seed asserted "til we figure out who validates"; we validate.
        return index, min(index + nr_pages, ALL_PAGES)

    # -- removal -----------------------------------------------------------------
    def remove_contig(self, index: int, nr_pages: int) -> int:
        """Try to evict the pages in [index, index + nr_pages); return how many.

        Only one remover runs at a time; a second returns 0 at once.  Pages in
        MAP_LOCKED regions and pages with slot references are left alone.
        Marked pages are unmapped from every region, each process's TLBs are
        shot down, PTE dirty bits are gathered, dirty pages are written back
        with the map lock dropped, and a page is freed only if nobody touched
        it since it was marked.  A writepage error keeps that page (dirty, in
        the cache) and is raised once the rest of the range is done.
        """
        lo, hi = self._check_range(index, nr_pages)
        if lo >= hi:
            return 0
        # One remover at a time: REMOVAL bits are our work list, and a second
        # remover could not tell its marks from ours (the two-removers
        # scenario; its two-removers mutant lets both in and is caught).
        if self.removal.swap(1):
            return 0
        try:
            return self._remove_contig(lo, hi)
        finally:
            self.removal.store(0)

    def _remove_contig(self, lo: int, hi: int) -> int:
        self.lock.acquire()
        try:
            self._mark_for_removal(lo, hi)
            self._unmap_marked(lo, hi)
            failed, first_error = self._write_back_marked(lo, hi)
            nr_removed = self._free_marked(lo, hi)
        finally:
            self.lock.release()
        self.stats.removed += nr_removed
        self.stats.removals += 1
        if first_error is not None:
            self.stats.writeback_errors += len(failed)
            raise first_error
        return nr_removed

    def _mark_for_removal(self, lo: int, hi: int, respect_pins: bool = True) -> None:
        """Pass 1: set REMOVAL on every unpinned, unreferenced page in range."""
        pinned = [v for v in self.vmrs if v.flags & MAP_LOCKED] if respect_pins else []
        for i, tree_slot in self.tree.items(lo, hi):
            # A pinned region's pages are off limits even if not faulted in yet.
            if pinned and any(vmr_has_page_idx(v, i) for v in pinned):
                continue
            old = tree_slot.load()
            page = self._slot_get_page(old)
            if page is None:
                continue
            # Someone is using it; any later user clears REMOVAL and aborts us
            # (write-remove; the mark-referenced mutant marks it anyway and is
            # caught freeing a page in use).
            if slot_check_refcnt(old):
                continue
            if not tree_slot.cas(old, slot_set_removal(old)):
                continue
            # The page's own bit is only for our convenience when we walk PTEs.
            page.flags.fetch_or(PG_REMOVAL)

    def _unmap_marked(self, lo: int, hi: int, include_pinned: bool = False) -> None:
        """Passes 2 and 3: unmap marked pages from every region, shoot down, and
        collect the dirty bits of every PTE we clear."""
        spans = mapped_spans(self.vmrs, lo, hi, without_flags=0 if include_pinned else MAP_LOCKED)
        procs: list[AddressSpace] = []
        for span in spans:
            proc = span.proc
            with proc.pte_lock:
                for pte in proc.ptes(span.lo, span.hi):
                    self._pte_mark_not_present(pte)
            # Batch the shootdowns, one per process, PTR_ARR_LEN at a time
            # (test_shootdowns_are_batched_ten_processes_at_a_time).  The region,
            # so its process, stays put meanwhile: munmap must take `lock` to
            # take it off the list (munmap-remove; "munmap leaves the page map
            # before zeroing PTEs" in tests/check/test_mm_mutants.py is caught).
            if any(p is proc for p in procs):
                continue
            if len(procs) == PTR_ARR_LEN:
                self._shootdown_and_reset(procs)
            procs.append(proc)
        # Only after every TLB has forgotten the pages will stores fault, so
        # only now can the D bits be trusted (store-remove: a store through a
        # TLB entry with D cached; the no-shootdown and dirty-before-shootdown
        # mutants lose it).
        self._shootdown_and_reset(procs)
        for span in spans:
            proc = span.proc
            # Whatever vm_prot says now: a concurrent mprotect may have just
            # downgraded a PTE that was written through a moment ago
            # (the mprotect-remove scenario).
            with proc.pte_lock:
                for pte in proc.ptes(span.lo, span.hi):
                    self._pte_unmap_keep_dirty(pte)

    @staticmethod
    def _shootdown_and_reset(procs: list[AddressSpace]) -> None:
        for proc in procs:
            proc.tlb_shootdown()
        procs.clear()

    def _removal_target(self, pte_val: int) -> Page | None:
        page = self.allocator.pages[pte_ppn(pte_val)]
        # Only our marked pages: a private copy or another map's page in this
        # region's range is not ours to unmap.
        if page.mapping is self and page.flags.load() & PG_REMOVAL:
            return page
        return None

    def _pte_mark_not_present(self, pte: AtomicWord) -> None:
        """Clear P on a PTE that maps a page marked for removal.

        A CAS, not a read then a write: the MMU may set D between them, and a
        fault may install a different page (a private copy) in the meantime
        (the store-remove and private-remove scenarios).
        """
        while True:
            old = pte.load()
            if not old & PTE_P or self._removal_target(old) is None:
                return
            if pte.cas(old, old & ~PTE_P):
                return

    def _pte_unmap_keep_dirty(self, pte: AtomicWord) -> None:
        """Zero a (formerly present) PTE of a marked page, moving D to PG_DIRTY."""
        while True:
            old = pte.load()
            if not old:
                return
            page = self._removal_target(old)
            if page is None:
                return
            if pte.cas(old, 0):
                if old & PTE_D:
                    page.flags.fetch_or(PG_DIRTY)
                return

    def _write_back_marked(self, lo: int, hi: int) -> tuple[list[Page], OSError | None]:
        """Pass 4: write back marked dirty pages, PTR_ARR_LEN at a time, with
        the map lock dropped around each batch.  Returns the pages whose
        writepage failed, and the first error."""
        todo = [i for i, _ in self.tree.items(lo, hi)]
        pos = 0
        failed: list[Page] = []
        first_error: OSError | None = None
        while True:
            batch: list[Page] = []
            while pos < len(todo) and len(batch) < PTR_ARR_LEN:
                page = self._marked_page(todo[pos])
                pos += 1
                # A write() dirties a page too, not only a PTE's D bit.
                if page is not None and page.flags.load() & PG_DIRTY:
                    batch.append(page)
            # Still the only remover, but with `lock` dropped a user may find a
            # page of the batch and clear its REMOVAL; pass 5 then spares it.
            # The write-remove and writeback-remove scenarios reach this in
            # thousands of their DFS schedules; the lock is shown dropped by
            # test_dirty_pages_are_written_ten_at_a_time_with_the_map_lock_dropped.
            self.lock.release()
            try:
                for page in batch:
                    try:
                        self._writeback_page(page)
                    except OSError as exc:
                        failed.append(page)
                        first_error = first_error or exc
            finally:
                self.lock.acquire()
            if pos >= len(todo):
                break
        # A page that could not be written must not be freed: clear its slot's
        # REMOVAL, as a user would, and pass 5 will spare it (eio-writeback;
        # the writeback-error-frees mutant frees it and is caught).
        for page in failed:
            if page.tree_slot is not None:
                page.tree_slot.fetch_and(~PM_REMOVAL)
        return failed, first_error

    def _marked_page(self, index: int) -> Page | None:
        """The page at `index` if we marked it and nobody used it since.

        If somebody used it (their CAS cleared the slot's REMOVAL while an
        earlier batch was written with the lock dropped), we lost the race for
        it: we set PG_REMOVAL, so we clear it.  The main job's runs reach this
        (test_small_runs_hold_every_oracle_under_the_sim).
        """
        tree_slot = self.tree.lookup_slot(index)
        if tree_slot is None:
            return None
        slot_val = tree_slot.load()
        page = self._slot_get_page(slot_val)
        if page is None or not page.flags.load() & PG_REMOVAL:
            return None
        if not slot_check_removal(slot_val):
            page.flags.fetch_and(~PG_REMOVAL)
            return None
        return page

    def _free_marked(self, lo: int, hi: int) -> int:
        """Pass 5: free every page still marked; the count freed."""
        nr_removed = 0
        for i, tree_slot in list(self.tree.items(lo, hi)):
            old = tree_slot.load()
            page = self._slot_get_page(old)
            if page is None or not page.flags.load() & PG_REMOVAL:
                continue
            if not slot_check_removal(old) or slot_check_refcnt(old):
                # Used since we marked it (write-remove; the free-after-reuse
                # mutant frees it anyway and is caught).  A count with REMOVAL
                # still set breaks the protocol; the seed warned and freed
                # anyway, we spare the page.
                page.flags.fetch_and(~PG_REMOVAL)
                continue
            # Keep REMOVAL, drop the page: lookups now miss, as in the seed.
            if not tree_slot.cas(old, slot_set_ppn(old, 0)):
                page.flags.fetch_and(~PG_REMOVAL)
                continue
            self.tree.delete(i)
            page.flags.store(0)
            self.allocator.decref(page)
            nr_removed += 1
        self.num_pages -= nr_removed
        return nr_removed

    # -- truncation --------------------------------------------------------------
    def truncate_pages(self, first_index: int) -> int:
        """Drop every page at or past `first_index`; the number dropped.

        For truncate, once the host's size is already below these pages: their
        bytes are past the end of the file, so they are dropped dirty or not,
        pinned or not, and unmapped from every region (an access there is now a
        bus error).  It runs the removal protocol without the writeback pass,
        as the only remover, and goes round again while some page still has a
        slot reference: its user (a fault or a read that looked before the size
        shrank, a writeback) is about to put it, and nobody new can find a page
        past the end.  Exercised by test_truncate_racing_writeback_never_resurrects
        (two to five rounds in about a fifth of its seeds) and, with a fault
        holding the page, by test_a_fault_racing_truncate_unmaps_what_it_installed.
        """
        lo, hi = self._check_range(first_index, ALL_PAGES)
        while self.removal.swap(1):
            self.executor.relax()  # another remover is mid-protocol; let it finish
        dropped = 0
        try:
            while True:
                with self.lock:
                    if next(self.tree.items(lo, hi), None) is None:
                        return dropped
                    self._mark_for_removal(lo, hi, respect_pins=False)
                    self._unmap_marked(lo, hi, include_pinned=True)
                    dropped += self._free_marked(lo, hi)
                self.executor.relax()
        finally:
            self.removal.store(0)
