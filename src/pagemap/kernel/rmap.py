"""The reverse map: from a page map's pages to the PTEs that map them.

A page map keeps the list of memory regions (VMRs) that map its object; this
file says what the page map needs of those regions and of the address spaces
they belong to, keeps the list (ReverseMap, part of PageMap), and walks it
(`mapped_spans`, the one walk: removal, fsync and truncate all go through it).

Rules: the caller of `mapped_spans` holds the page map's lock, which is what
keeps a region on the list (munmap must take that lock to take a region off),
so every span it returns stays valid until the caller lets go.  The walk
itself touches no PTE and has no scheduling point.

Lock order, outermost first: an address space's vmr_lock, the page map's
lock, the address space's pte_lock.  So what an address space does under its
pte_lock (`collect_dirty`) may be called with the map lock held, and what
takes its vmr_lock (`drop_private_copies`) may not.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple, Protocol

from pagemap.hw.memory import PGSHIFT, PGSIZE
from pagemap.hw.mmu import PTE_D, PTE_P, PTE_W, pte_ppn
from pagemap.kernel.errors import InvalidArgument
from pagemap.kernel.mman import MAP_SHARED
from pagemap.kernel.page import Page
from pagemap.kernel.radix import ALL_PAGES
from pagemap.sync.atomic import AtomicWord
from pagemap.sync.locks import SpinLock


class AddressSpace(Protocol):
    """What the page map needs of a process that maps its pages."""

    pid: int
    pte_lock: SpinLock
    # A flush reclaim deferred (TTU_BATCH_FLUSH); set and cleared under pte_lock.
    tlb_flush_batched: bool

    def ptes(self, va_lo: int, va_hi: int) -> Iterable[AtomicWord]:
        """The PTE words that exist for pages in [va_lo, va_hi); pte_lock held."""
        ...

    def pte_at(self, va: int) -> AtomicWord | None:
        """The PTE word for the page at `va`, if there has ever been one;
        pte_lock held."""
        ...

    def tlb_shootdown(self, lo: int | None = None, hi: int | None = None) -> None:
        """Remove this address space's entries from every core's TLB: all
        of them, or those of the pages of [lo, hi)."""

    def collect_dirty(self, va_lo: int, va_hi: int) -> None:
        """Move the D bits of the PTEs in [va_lo, va_hi) to PG_DIRTY on their
        pages, so that a writeback sees stores made through the mapping.
        Takes pte_lock: callable with the map lock held."""

    def drop_private_copies(self, va_lo: int, va_hi: int) -> None:
        """Unmap and free this address space's private copies in
        [va_lo, va_hi).  Takes vmr_lock: never call it with the map lock held."""


class VMRegion(Protocol):
    """What the page map needs of a memory region mapping its object."""

    base: int
    end: int
    foff: int
    prot: int
    flags: int

    @property
    def proc(self) -> AddressSpace: ...


def vmr_has_page_idx(vmr: VMRegion, pg_idx: int) -> bool:
    """Whether `vmr` maps page `pg_idx` of its object."""
    nr_pgs = (vmr.end - vmr.base) >> PGSHIFT
    start_pg = vmr.foff >> PGSHIFT
    return start_pg <= pg_idx < start_pg + nr_pgs


def vmr_idx_to_va(vmr: VMRegion, pg_idx: int) -> int:
    va = vmr.base + ((pg_idx << PGSHIFT) - vmr.foff)
    assert vmr.base <= va < vmr.end, "page index outside the VMR"
    return va


def vmr_get_end_idx(vmr: VMRegion) -> int:
    return ((vmr.end - vmr.base) + vmr.foff) >> PGSHIFT


def vmr_overlap(vmr: VMRegion, lo: int, hi: int) -> tuple[int, int] | None:
    """The page indices [a, b) that `vmr` maps within [lo, hi), or None.

    The seed only considered VMRs that map page `lo` itself, so a VMR over the
    middle of the range kept its PTEs to pages that were then freed; removal
    here handles every VMR that overlaps the range at all.
    """
    a = max(lo, vmr.foff >> PGSHIFT)
    b = min(hi, vmr_get_end_idx(vmr))
    return (a, b) if a < b else None


class Span(NamedTuple):
    """The part [lo, hi) of region `vmr` that maps pages of a range."""

    vmr: VMRegion
    lo: int
    hi: int

    @property
    def proc(self) -> AddressSpace:
        return self.vmr.proc


def mapped_spans(
    vmrs: Iterable[VMRegion], lo: int, hi: int, with_flags: int = 0, without_flags: int = 0
) -> list[Span]:
    """Every region of `vmrs` that maps pages [lo, hi), has all of `with_flags`
    and none of `without_flags`, with the addresses that map those pages.

    The one walk of the reverse map: removal unmaps through it (passing over
    MAP_LOCKED regions), fsync collects D bits through it (MAP_SHARED
    regions only), truncate drops private copies through it (the others).
    The map lock is held.
    """
    spans: list[Span] = []
    for v in vmrs:
        if v.flags & with_flags != with_flags or v.flags & without_flags:
            continue
        overlap = vmr_overlap(v, lo, hi)
        if overlap is not None:
            a, b = overlap
            spans.append(Span(v, vmr_idx_to_va(v, a), vmr_idx_to_va(v, b - 1) + PGSIZE))
    return spans


class ReverseMap:
    """The page map's list of the regions that map its pages, and what the
    page map does through them.  Part of PageMap: kernel/pagemap.py mixes it
    in and sets these fields; removal (kernel/removal.py) walks the same list.
    """

    name: str
    lock: SpinLock
    vmrs: list[VMRegion]
    mkclean_locks_pte: bool

    def add_vmr(self, vmr: VMRegion) -> None:
        # Removal holds `lock` while it walks the VMRs, so a munmap that wants
        # to leave the list waits until removal has finished with its PTEs
        # (the munmap-remove scenario; its "leaves early" mutant is caught).
        with self.lock:
            self.vmrs.append(vmr)

    def remove_vmr(self, vmr: VMRegion) -> None:
        with self.lock:
            for i, v in enumerate(self.vmrs):
                if v is vmr:
                    del self.vmrs[i]
                    return
        raise InvalidArgument(f"{self.name}: remove_vmr of a VMR that is not in the map")

    def collect_mapped_dirty(self, index: int, nr_pages: int) -> None:
        """Move to PG_DIRTY the D bits of every shared mapping of pages
        [index, index + nr_pages), so that a writeback (fsync) sees stores
        made through mappings; msync does the same for one process's range."""
        with self.lock:
            for span in mapped_spans(self.vmrs, index, index + nr_pages, with_flags=MAP_SHARED):
                span.proc.collect_dirty(span.lo, span.hi)

    def page_mkclean(self, page: Page) -> bool:
        """Write-protect every shared PTE that maps `page` and clean it: True
        if one was writable or dirty (the caller then marks the page dirty).

        Writeback's half of write-protect tracking (clear_page_dirty_for_io,
        kernel/writeback.py), one walk of the reverse map for the page.  Each
        PTE is changed by one atomic operation under its process's pte_lock
        and that process's TLBs are shot down before the lock is dropped: a
        store through an entry cached writable lands before the shootdown,
        so before the caller clears PG_DIRTY and writes, and every later store
        faults (kernel/mkwrite.py).  The PTE is read under the pte_lock, never
        before: a PTE another path holds not-present for an instant under
        that lock may be writable and dirty again when it lets go
        (479db0bf408e; `mkclean_locks_pte` off puts the bug back for
        check/scenarios/known/wp.py).  The page lock is held.
        """
        dirty = False
        with self.lock:
            for span in mapped_spans(self.vmrs, page.index, page.index + 1, with_flags=MAP_SHARED):
                proc = span.proc
                if not self.mkclean_locks_pte:
                    pte = proc.pte_at(span.lo)
                    if pte is None or not pte.load() & PTE_P:
                        continue  # the 2008 shortcut: not present, so not ours to clean
                with proc.pte_lock:
                    pte = proc.pte_at(span.lo)
                    if pte is not None and self._mkclean_one(pte, page):
                        proc.tlb_shootdown()
                        dirty = True
        return dirty

    @staticmethod
    def _mkclean_one(pte: AtomicWord, page: Page) -> bool:
        """Clear W and D in `pte` if it maps `page` writable or dirty; True
        if it did (pte_lock held).  A CAS: the MMU may set D meanwhile."""
        while True:
            old = pte.load()
            if pte_ppn(old) != page.ppn or not old & (PTE_W | PTE_D):
                return False
            if pte.cas(old, old & ~(PTE_W | PTE_D)):
                return True

    def drop_private_copies(self, index: int) -> None:
        """Unmap and free the private copies of pages at or past `index` in
        every MAP_PRIVATE mapping, as Linux's truncate does: once the file ends
        before them, an access there is a bus error, copied or not."""
        # One walk is not enough.  A fork may register its child's region
        # after our walk and, holding the parent's vmr_lock, copy the parent's
        # private copies into it before we take that lock (fork-truncate,
        # check/scenarios/cow.py: fork's step 1 raced our vmr_lock).  Fork
        # registers and copies under that lock, which we have taken and
        # dropped since, so a second walk finds the child.  Linux's walk
        # cannot go stale: it holds i_mmap_rwsem, which dup_mmap takes to add
        # the child's VMA.  A walk that finds no private region needs no
        # other: a copy made after it lies past the new end, a bus error.
        done: list[Span] = []
        while True:
            with self.lock:
                found = mapped_spans(self.vmrs, index, ALL_PAGES, without_flags=MAP_SHARED)
            spans = [s for s in found if not any(_same(s, d) for d in done)]
            if not spans:
                return
            # With the lock dropped: a process takes its vmr_lock first, then ours.
            for span in spans:
                span.proc.drop_private_copies(span.lo, span.hi)
            done += spans


def _same(a: Span, b: Span) -> bool:
    """The same part of the same region (a region is its object, not its value)."""
    return a.vmr is b.vmr and a.lo == b.lo and a.hi == b.hi


__all__ = [
    "AddressSpace",
    "ReverseMap",
    "Span",
    "VMRegion",
    "mapped_spans",
    "vmr_get_end_idx",
    "vmr_has_page_idx",
    "vmr_idx_to_va",
    "vmr_overlap",
]
