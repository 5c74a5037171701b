"""How pages leave a page map: pm_remove_contig (and, built on it,
truncate_pages in kernel/truncate_pages.py).

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

One place fuses passes, for speed at scale: when no region maps any page
of the range, remove_contig first frees, in one walk under the map lock,
every page that is clean, unreferenced and unlocked (`_free_clean_unmapped`,
whose docstring says why that is the same protocol: for such a page passes
2 to 4 have nothing to do, and nothing can reach it between its mark and
its free).  Every other page of the range (dirty, in use, locked, or in a
mapped range) still goes through the five passes.  The fused pass empties
whole radix leaves and prunes once, and frees its frames in one batch
(PageAllocator.decref_many: one allocator lock for the lot).  The pagemap
scenarios without mappings (write-remove, two-removers, refcount, ...) run
it under the checker; test_clean_unmapped_pages_go_in_one_fused_pass_and_the_rest_by_the_five
shows which pages take which path.

`remove_pages` is reclaim's entry (kernel/reclaim.py): the same five passes
in the same order under the same locks, over a list of chosen pages rather
than a range (pass 1 marks only those still in the frames reclaim chose; the
PTE passes look up those pages' PTEs instead of walking the range), never
fused: each page goes mark, unmap, shootdown, collect D, write back, free,
and any use in between saves it.  It waits for another remover instead of
returning 0, so that "busy" is never taken for "nothing to free".  Slot
words live in the frame table (kernel/page.py); the tree maps an index to
the frame whose slot it is.

Where each part lives: passes 1, 4 and 5 and the entry points here; passes
2 and 3 (the PTEs) in kernel/unmap_marked.py, this class's base;
truncate_pages in kernel/truncate_pages.py, a subclass of this one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pagemap.kernel.errors import InvalidArgument
from pagemap.kernel.mman import MAP_LOCKED
from pagemap.kernel.owner import as_int
from pagemap.kernel.page import (
    PG_DIRTY,
    PG_LOCKED,
    PG_REMOVAL,
    Page,
    PageAllocator,
)
from pagemap.kernel.radix import ALL_PAGES, RADIX_FANOUT, RadixTree
from pagemap.kernel.rmap import (
    AddressSpace,
    VMRegion,
    mapped_spans,
    vmr_has_page_idx,
)
from pagemap.kernel.slot import (
    PM_PPN_MASK,
    PM_REFCNT_SHIFT,
    PM_REMOVAL,
    slot_check_removal,
    slot_set_ppn,
)
from pagemap.kernel.unmap_marked import PTR_ARR_LEN as PTR_ARR_LEN
from pagemap.kernel.unmap_marked import UnmapMarked
from pagemap.sync.arrays import AtomicArray
from pagemap.sync.atomic import AtomicWord, StatCounter
from pagemap.sync.executor import Executor
from pagemap.sync.locks import SpinLock


class Lru(Protocol):
    """What the page map tells the machine's reclaim (kernel/reclaim.py's
    Reclaim, which frees pages through this module: named here by shape),
    with the map lock held, of every page that enters or leaves it."""

    def inserted(self, page: Page) -> None: ...

    def removed(self, page: Page) -> None: ...

    def removed_many(self, pages: list[Page]) -> None: ...


@dataclass
class PageMapStats:
    hits: int = 0  # lookups that found the page cached (under the map lock)
    misses: int = 0  # pages inserted to be read (under the map lock)
    removals: int = 0  # remove_contig calls that ran the protocol (one remover)
    removed: int = 0  # pages freed by them
    writeback_errors: int = 0  # pages kept because their writeback failed
    writebacks: StatCounter = field(default_factory=StatCounter)  # pages written


class Removal(UnmapMarked):
    """The page-out half of struct page_map."""

    # What removal uses of its page map: fields PageMap.__init__ sets, and
    # the one-page writeback of kernel/writeback.py.
    name: str
    executor: Executor
    allocator: PageAllocator
    tree: RadixTree
    slots: AtomicArray
    flags: AtomicArray
    num_pages: int
    lock: SpinLock
    vmrs: list[VMRegion]
    removal: AtomicWord
    stats: PageMapStats
    lru: Lru | None
    unmap_every_vmr: bool
    atomic_pte_clear: bool

    if TYPE_CHECKING:

        def _writeback_page(self, page: Page) -> bool: ...

        def put_page(self, page: Page) -> None: ...

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

    def remove_pages(self, want: dict[int, int]) -> int:
        """Reclaim's removal: evict the pages at the indices of `want`, each
        only if it is still the page in frame want[index]; how many were freed.

        The same five passes as remove_contig, over these pages alone (the
        PTE passes look up each page's PTEs rather than walk a range).  It
        waits for a remover already at work on this map instead of giving
        up, so that reclaim does not take "busy" for "nothing to free".
        A writepage error keeps its page and is not raised: reclaim moves on
        to other victims, and the page stays dirty for fsync to report.
        """
        if not want:
            return 0
        while self.removal.swap(1):
            self.executor.relax()  # another remover is mid-protocol; let it finish
        try:
            # A failed writeback is counted in stats.writeback_errors; its page stays.
            return self._remove_passes(min(want), max(want) + 1, want)[0]
        finally:
            self.removal.store(0)

    def _remove_contig(self, lo: int, hi: int) -> int:
        return self._remove(lo, hi, None)

    def _remove(self, lo: int, hi: int, only: dict[int, int] | None) -> int:
        nr_removed, first_error = self._remove_passes(lo, hi, only)
        if first_error is not None:
            raise first_error
        return nr_removed

    def _remove_passes(
        self, lo: int, hi: int, only: dict[int, int] | None
    ) -> tuple[int, OSError | None]:
        self.lock.acquire()
        try:
            fast = 0
            if only is None:
                indices = None
                if not mapped_spans(self.vmrs, lo, hi):
                    fast = self._free_clean_unmapped(lo, hi)
            else:
                tree = self.tree
                indices = [i for i in sorted(only) if tree.lookup(i) == only[i]]
            self._mark_for_removal(lo, hi, indices=indices)
            if only is None:
                self._unmap_marked(lo, hi, indices=indices)
                failed, first_error = self._write_back_marked(lo, hi, indices)
            else:
                # Reclaim batches its flushes (Linux's TTU_BATCH_FLUSH): the
                # PTEs are cleared now, the TLBs flushed before a dirty page
                # is written (try_to_unmap_flush_dirty) and before any page
                # is freed (try_to_unmap_flush).
                pending: list[AddressSpace] = []
                self._unmap_marked(lo, hi, indices=indices, batched=pending)
                failed, first_error = self._write_back_marked(
                    lo, hi, indices, before_write=lambda: self._flush_batched(pending)
                )
                self._flush_batched(pending)
            nr_removed = fast + self._free_marked(lo, hi, indices)
        finally:
            self.lock.release()
        self.stats.removed += nr_removed
        self.stats.removals += 1
        if first_error is not None:
            self.stats.writeback_errors += len(failed)
        return nr_removed, first_error

    def _free_clean_unmapped(self, lo: int, hi: int) -> int:
        """Passes 1 to 5 fused, for the clean unreferenced pages of a range no
        region maps; the number freed.  The map lock held.

        Why it is the same protocol: the map lock is held from the mark to
        the free, and no region maps the range (add_vmr takes the lock; a
        region leaves the list only after munmap zeroed its PTEs, moving D to
        PG_DIRTY).  A finder takes its reference under the map lock, so
        nobody can take one between our load and our CAS but a put of a
        reference we saw as absent, which cannot exist; no PTE maps the page,
        so passes 2 and 3 would find nothing; it is clean, so pass 4 would
        write nothing; and pass 5 would find REMOVAL still set and no
        reference.  The seed drops the map lock only in pass 4, to write; a
        clean page has nothing to write, so no use can fall between its mark
        and its free, and the CAS that marks (pass 1) and the CAS that drops
        the page (pass 5) become one: from "no reference" to "REMOVAL, no
        page".  The CAS still fails, and the page is left to the five passes,
        if the word changed since we loaded it.  Dirty, locked or referenced
        pages are left to the five passes that follow.
        """
        slots, flags = self.slots, self.allocator.frames.flags
        pages = self.allocator.pages
        tree = self.tree
        freed: list[Page] = []
        busy = PG_DIRTY | PG_LOCKED | PG_REMOVAL
        for base, node in list(tree.leaf_nodes(lo, hi)):
            leaf = node.items
            gone: list[int] = []
            for j in range(max(lo - base, 0), min(hi - base, RADIX_FANOUT)):
                ppn = leaf[j]
                if not ppn:
                    continue
                old = slots.load(ppn)
                if old >> PM_REFCNT_SHIFT or not old & PM_PPN_MASK or flags.load(ppn) & busy:
                    continue
                if not slots.cas(ppn, old, (old | PM_REMOVAL) & ~PM_PPN_MASK):
                    continue
                flags.store(ppn, 0)
                gone.append(j)
                freed.append(pages[ppn])
            if gone:
                tree.clear_many(node, gone)
        if not freed:
            return 0
        tree.prune()
        self._release_pages(freed)
        return len(freed)

    def _items(self, lo: int, hi: int, indices: list[int] | None) -> list[tuple[int, int]]:
        """(index, frame) of the cached pages in [lo, hi), or of `indices`."""
        if indices is None:
            return self.tree.entries(lo, hi)
        lookup = self.tree.lookup
        return [(i, ppn) for i in indices if (ppn := lookup(i))]

    def _mark_for_removal(
        self, lo: int, hi: int, respect_pins: bool = True, indices: list[int] | None = None
    ) -> None:
        """Pass 1: set REMOVAL on every unpinned, unreferenced page in range
        (or of `indices`)."""
        pinned = [v for v in self.vmrs if v.flags & MAP_LOCKED] if respect_pins else []
        slots, flags = self.slots, self.allocator.frames.flags
        for i, ppn in self._items(lo, hi, indices):
            # A pinned region's pages are off limits even if not faulted in yet.
            if pinned and any(vmr_has_page_idx(v, i) for v in pinned):
                continue
            old = slots.load(ppn)
            if not old & PM_PPN_MASK:
                continue
            # Someone is using it; any later user clears REMOVAL and aborts us
            # (write-remove; the mark-referenced mutant marks it anyway and is
            # caught freeing a page in use).  slot_check_refcnt and
            # slot_set_removal, inline: a pass over many pages.
            if old >> PM_REFCNT_SHIFT:
                continue
            if not slots.cas(ppn, old, old | PM_REMOVAL):
                continue
            # The page's own bit is only for our convenience when we walk PTEs.
            flags.fetch_or(ppn, PG_REMOVAL)

    def _write_back_marked(
        self,
        lo: int,
        hi: int,
        indices: list[int] | None = None,
        before_write: Callable[[], None] | None = None,
    ) -> tuple[list[Page], OSError | None]:
        """Pass 4: write back marked dirty pages, PTR_ARR_LEN at a time, with
        the map lock dropped around each batch (`before_write`, if given,
        runs then, before the first page is written).  Returns the pages
        whose writepage failed, and the first error."""
        todo = [i for i, _ in self._items(lo, hi, indices)]
        pos = 0
        failed: list[Page] = []
        first_error: OSError | None = None
        while True:
            batch: list[Page] = []
            while pos < len(todo) and len(batch) < PTR_ARR_LEN:
                page = self._marked_page(todo[pos])
                pos += 1
                # A write() dirties a page too, not only a PTE's D bit.
                if page is not None and self.flags.load(page.ppn) & PG_DIRTY:
                    batch.append(page)
            # Still the only remover, but with `lock` dropped a user may find a
            # page of the batch and clear its REMOVAL; pass 5 then spares it.
            # The write-remove and writeback-remove scenarios reach this in
            # thousands of their DFS schedules; the lock is shown dropped by
            # test_dirty_pages_are_written_ten_at_a_time_with_the_map_lock_dropped.
            self.lock.release()
            try:
                if batch and before_write is not None:
                    before_write()
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
            if page.mapping is not None:
                self.slots.fetch_and(page.ppn, ~PM_REMOVAL)
        return failed, first_error

    def _marked_page(self, index: int) -> Page | None:
        """The page at `index` if we marked it and nobody used it since.

        If somebody used it (their CAS cleared the slot's REMOVAL while an
        earlier batch was written with the lock dropped), we lost the race for
        it: we set PG_REMOVAL, so we clear it.  The main job's runs reach this
        (test_small_runs_hold_every_oracle_under_the_sim).
        """
        ppn = self.tree.lookup(index)
        if not ppn:
            return None
        slot_val = self.slots.load(ppn)
        page = self._slot_get_page(slot_val)
        if page is None or not self.flags.load(page.ppn) & PG_REMOVAL:
            return None
        if not slot_check_removal(slot_val):
            self.flags.fetch_and(page.ppn, ~PG_REMOVAL)
            return None
        return page

    def _free_marked(self, lo: int, hi: int, indices: list[int] | None = None) -> int:
        """Pass 5: free every page still marked; the count freed.

        The pages leave the tree as they are dropped, and their frames go
        back together at the end of the pass, with the map lock still held:
        nobody can reach a dropped page in between (its slot names no page,
        and it is in no tree), so the batch frees what the seed frees one by
        one, in one allocator lock.  A range leaves the tree leaf by leaf,
        pruned once; chosen indices (reclaim) one by one."""
        slots, flags = self.slots, self.flags
        tree = self.tree
        freed: list[Page] = []
        # The range's leaves, reached in order as its pages are; entries are
        # cleared, and emptied nodes pruned once at the end.
        leaves = tree.leaf_nodes(lo, hi) if indices is None else None
        base: int = -RADIX_FANOUT
        node: Any = None
        cleared: list[int] = []
        for i, ppn in self._items(lo, hi, indices):
            old = slots.load(ppn)
            page = self._slot_get_page(old)
            if page is None or not flags.load(ppn) & PG_REMOVAL:
                continue
            if not old & PM_REMOVAL or old >> PM_REFCNT_SHIFT:
                # Used since we marked it (write-remove; the free-after-reuse
                # mutant frees it anyway and is caught).  A count with REMOVAL
                # still set breaks the protocol; the seed warned and freed
                # anyway, we spare the page.  (slot_check_removal and
                # slot_check_refcnt, inline: a pass over many pages.)
                flags.fetch_and(ppn, ~PG_REMOVAL)
                continue
            # Keep REMOVAL, drop the page: lookups now miss, as in the seed.
            if not slots.cas(ppn, old, slot_set_ppn(old, 0)):
                flags.fetch_and(ppn, ~PG_REMOVAL)
                continue
            if leaves is None:
                tree.delete(i)
            else:
                while i >= base + RADIX_FANOUT:
                    if cleared:
                        tree.clear_many(node, cleared)
                        cleared = []
                    base, node = next(leaves)
                cleared.append(i - base)
            flags.store(ppn, 0)
            freed.append(page)
        if cleared:
            tree.clear_many(node, cleared)
        if leaves is not None and freed:
            tree.prune()
        if freed:
            self._release_pages(freed)
        return len(freed)

    def _release_pages(self, freed: list[Page]) -> None:
        """Frames of pages just dropped from the map go back; map lock held."""
        self.num_pages -= len(freed)
        if self.lru is not None:
            self.lru.removed_many(freed)  # before the frames can be handed out again
        self.allocator.decref_many(freed)
