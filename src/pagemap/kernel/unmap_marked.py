"""Removal's PTE passes: unmap the marked pages from every region, shoot
down the TLBs, and collect the dirty bits of the PTEs cleared.

Part of PageMap, through Removal (kernel/removal.py), whose passes 2 and 3
these are; its header has the protocol whole.  Rules: the remover holds the
map lock (so no region leaves the map meanwhile) and, per process, its
pte_lock while it reads or clears that process's PTEs.  A PTE changes by CAS
only, so a D bit the MMU sets, or a private copy a fault installs, between
the read and the write is never lost.  The D bits are collected only after
the shootdown (or, batched, once every PTE is cleared): before it, a store
through a TLB entry could still land.
"""

from __future__ import annotations

from pagemap.hw.mmu import PTE_D, PTE_P, pte_ppn
from pagemap.kernel.mman import MAP_LOCKED
from pagemap.kernel.page import PG_DIRTY, PG_REMOVAL, Page, PageAllocator
from pagemap.kernel.rmap import (
    AddressSpace,
    Span,
    VMRegion,
    mapped_spans,
    vmr_has_page_idx,
    vmr_idx_to_va,
)
from pagemap.sync.arrays import AtomicArray
from pagemap.sync.atomic import Word

# How many processes, or dirty pages, removal batches before acting (PTR_ARR_LEN).
PTR_ARR_LEN = 10


class UnmapMarked:
    """Passes 2 and 3 of the removal protocol."""

    # What the PTE passes use of their page map: fields PageMap.__init__ sets
    # (`name` too: a page's map is one with a name, kernel/page.py's
    # PageMapping, and _removal_target asks whether it is this one).
    name: str
    allocator: PageAllocator
    flags: AtomicArray
    vmrs: list[VMRegion]
    unmap_every_vmr: bool
    atomic_pte_clear: bool

    def _unmap_marked(
        self,
        lo: int,
        hi: int,
        include_pinned: bool = False,
        indices: list[int] | None = None,
        ranged: bool = False,
        batched: list[AddressSpace] | None = None,
    ) -> None:
        """Passes 2 and 3: unmap marked pages from every region, shoot down, and
        collect the dirty bits of every PTE we clear.  With `indices`, only
        those pages' PTEs are looked at.  The seed flushes each process's
        whole address space; with `ranged` (truncate, as Linux's
        unmap_mapping_range flushes each region's range) a process's flush
        covers only the addresses of its spans.  With `batched` (reclaim)
        nothing is flushed here: each process whose PTEs were cleared is
        marked tlb_flush_batched and added to the list, for the caller to
        flush (_flush_batched) before it writes or frees; a D bit is
        collected at once, since a TLB entry with D cached means the PTE had
        D too, so the page is dirty already when a store lands through it."""
        spans = mapped_spans(self.vmrs, lo, hi, without_flags=0 if include_pinned else MAP_LOCKED)
        if not self.unmap_every_vmr:
            # The seed's bug, for check/scenarios/known: only the regions that
            # map the first page of the range were visited.
            spans = [s for s in spans if vmr_has_page_idx(s.vmr, lo)]
        if not spans:
            return
        procs: list[AddressSpace] = []
        where: dict[int, tuple[int, int]] | None = {} if ranged else None
        for span in spans:
            proc = span.proc
            with proc.pte_lock:
                hit = False
                for pte in self._span_ptes(span, indices):
                    hit = bool(self._pte_mark_not_present(pte)) or hit
            if where is not None and hit:
                # Only spans where a PTE was cleared: Linux's zap flushes
                # nothing where it unmapped nothing (an mremap's old range,
                # whose PTEs already moved: the mremap-race scenario).
                a, b = where.get(proc.pid, (span.lo, span.hi))
                where[proc.pid] = (min(a, span.lo), max(b, span.hi))
            # Batch the shootdowns, one per process, PTR_ARR_LEN at a time
            # (test_shootdowns_are_batched_ten_processes_at_a_time).  The region,
            # so its process, stays put meanwhile: munmap must take `lock` to
            # take it off the list (munmap-remove; "munmap leaves the page map
            # before zeroing PTEs" in tests/check/test_mm_mutants.py is caught).
            if any(p is proc for p in procs):
                continue
            if len(procs) == PTR_ARR_LEN and batched is None:
                self._shootdown_and_reset(procs, where)
            procs.append(proc)
        # Only after every TLB has forgotten the pages will stores fault, so
        # only now can the D bits be trusted (store-remove: a store through a
        # TLB entry with D cached; the no-shootdown and dirty-before-shootdown
        # mutants lose it).
        if batched is None:
            self._shootdown_and_reset(procs, where)
        for span in spans:
            proc = span.proc
            # Whatever vm_prot says now: a concurrent mprotect may have just
            # downgraded a PTE that was written through a moment ago
            # (the mprotect-remove scenario).
            with proc.pte_lock:
                for pte in self._span_ptes(span, indices):
                    self._pte_unmap_keep_dirty(pte)
                if batched is not None:
                    # Read under pte_lock by whoever changes these PTEs next
                    # (MM.flush_tlb_batched_pending; reclaim-batch).
                    proc.tlb_flush_batched = True
                    if not any(p is proc for p in batched):
                        batched.append(proc)

    @staticmethod
    def _flush_batched(pending: list[AddressSpace]) -> None:
        """Flush the processes reclaim left pending, each whole (Linux's
        arch_tlbbatch_flush); their tlb_flush_batched stays set, as Linux's
        does, for the next flush_tlb_batched_pending to clear."""
        for proc in pending:
            proc.tlb_shootdown()
        pending.clear()

    @staticmethod
    def _span_ptes(span: Span, indices: list[int] | None) -> list[Word]:
        """The PTE words of a span, or of the pages of `indices` it maps; the
        process's pte_lock held."""
        proc = span.proc
        if indices is None:
            return list(proc.ptes(span.lo, span.hi))
        vmr = span.vmr
        out: list[Word] = []
        for i in indices:
            if vmr_has_page_idx(vmr, i):
                va = vmr_idx_to_va(vmr, i)
                if span.lo <= va < span.hi:
                    pte = proc.pte_at(va)
                    if pte is not None:
                        out.append(pte)
        return out

    @staticmethod
    def _shootdown_and_reset(
        procs: list[AddressSpace], where: dict[int, tuple[int, int]] | None = None
    ) -> None:
        """Shoot down each of `procs`: all of it, or with `where` the range
        it names for the process (pid -> [lo, hi))."""
        for proc in procs:
            if where is None:
                proc.tlb_shootdown()
            elif proc.pid in where:
                proc.tlb_shootdown(*where.pop(proc.pid))
        procs.clear()

    def _removal_target(self, pte_val: int) -> Page | None:
        ppn = pte_ppn(pte_val)
        page = self.allocator.pages[ppn]
        # Only our marked pages: a private copy or another map's page in this
        # region's range is not ours to unmap.
        if page.mapping is self and self.flags.load(ppn) & PG_REMOVAL:
            return page
        return None

    def _pte_mark_not_present(self, pte: Word) -> bool:
        """Clear P on a PTE that maps a page marked for removal; whether it did.

        A CAS, not a read then a write: the MMU may set D between them, and a
        fault may install a different page (a private copy) in the meantime
        (the store-remove and private-remove scenarios).
        """
        while True:
            old = pte.load()
            if not old & PTE_P or self._removal_target(old) is None:
                return False
            if not self.atomic_pte_clear:
                # The seed's read then write, for check/scenarios/known: a D
                # bit the MMU sets in between is overwritten.
                pte.store(old & ~PTE_P)
                return True
            if pte.cas(old, old & ~PTE_P):
                return True

    def _pte_unmap_keep_dirty(self, pte: Word) -> None:
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
                    self.flags.fetch_or(page.ppn, PG_DIRTY)
                return
