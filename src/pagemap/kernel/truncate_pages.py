"""truncate_pages: the removal protocol for pages past a file's new end.

Part of PageMap: kernel/pagemap.py mixes this class in; it is Removal
(kernel/removal.py) with truncation added, and runs removal's passes 1, 2, 3
and 5 (no writeback: the bytes are past the end).  Rules: the truncater is
the only remover (the `removal` word) for a round, which runs whole under the
map lock; a page somebody holds is taken with a reference of ours and
dropped after the round, under its page lock, never while we hold the map
lock.  The caller has already cut the size below these pages (vfs.py,
fs/ext2/truncate.py), so nothing re-reads them.
"""

from __future__ import annotations

import errno

from pagemap.kernel.errors import KernelError
from pagemap.kernel.page import (
    PG_DIRTY,
    PG_PAGEMAP,
    PG_REMOVAL,
    Page,
    lock_page,
    unlock_page,
)
from pagemap.kernel.radix import ALL_PAGES
from pagemap.kernel.removal import Removal
from pagemap.kernel.slot import PM_PPN_MASK, PM_REFCNT_ONE, PM_REMOVAL


class TruncatePages(Removal):
    """Truncation's half of struct page_map's removal."""

    def truncate_pages(self, first_index: int, nr_pages: int = ALL_PAGES) -> int:
        """Drop every page at or past `first_index`; the number dropped.

        For truncate, once the host's size is already below these pages: their
        bytes are past the end of the file, so they are dropped dirty or not,
        pinned or not, and unmapped from every region (an access there is now a
        bus error).  It runs the removal protocol without the writeback pass,
        as the only remover.  A page somebody holds a slot reference to is
        dropped too, as Linux's truncate drops a page from the cache whatever
        its count: it leaves the map, and its frame is freed when its last
        reference is put (`_drop_held`).  Waiting for the reference instead
        would wait forever for a holder that is not going to put it soon (a
        caller of the public PageMap.load_page;
        test_truncate_with_a_page_held_drops_it_and_frees_it_at_the_last_put).
        A fault that looked the page up before the size shrank cannot map it
        after we unmapped it: it checks the size again under its pte_lock as
        it installs (fault.py; test_a_fault_racing_truncate_unmaps_what_it_installed).
        """
        lo, hi = self._check_range(first_index, nr_pages)  # a hole punched: a range
        dropped = 0
        while True:
            # The only remover for a round, which runs whole under the map
            # lock; not while we sleep on a held page's lock below, so that a
            # writepage we wait for may reclaim from this map meanwhile.
            while self.removal.swap(1):
                self.executor.relax()  # another remover is mid-protocol; let it finish
            try:
                with self.lock:
                    if next(self.tree.items(lo, hi), None) is None:
                        return dropped
                    self._mark_for_removal(lo, hi, respect_pins=False)
                    held = self._hold_referenced(lo, hi)
                    self._unmap_marked(lo, hi, include_pinned=True, ranged=True)
                    dropped += self._free_marked(lo, hi)
            finally:
                self.removal.store(0)
            for page in held:
                dropped += self._drop_held(page)

    def _hold_referenced(self, lo: int, hi: int) -> list[Page]:
        """The pages of [lo, hi) that pass 1 left unmarked because somebody
        holds them, each with one more slot reference, ours, and PG_REMOVAL
        set so that the PTE passes unmap them (pass 5 spares them, as it
        spares any page whose slot lacks REMOVAL, and clears that bit).  The
        map lock held."""
        slots, flags = self.slots, self.flags
        held: list[Page] = []
        for _, ppn in self.tree.entries(lo, hi):
            while True:
                old = slots.load(ppn)
                if not old & PM_PPN_MASK or old & PM_REMOVAL:
                    break
                if slots.cas(ppn, old, old + PM_REFCNT_ONE):
                    flags.fetch_or(ppn, PG_REMOVAL)
                    held.append(self.allocator.pages[ppn])
                    break
        return held

    def _unmap_again(self, page: Page) -> None:
        """Linux's second unmap_mapping_range, for a held page leaving the map.

        A fault that found the page in the tree (held, by it or by another)
        may have installed it after the round's unmap pass; from here the
        fault sees no PG_PAGEMAP and installs nothing (fault.py; punch-fault,
        fault-truncate).  The PTE passes unmap only a page marked PG_REMOVAL,
        which pass 5 cleared on a held page (Removal._free_marked): it is
        marked again, or a PTE a fault installed after the round outlives
        the frame (punch-mremap: a store's fault of a page cached before the
        punch, its PTE then moved by mremap; mutant drop-held-unmarked).
        Called with the map lock and the page lock held."""
        self.flags.fetch_or(page.ppn, PG_REMOVAL)
        self._unmap_marked(page.index, page.index + 1, include_pinned=True)
        self.flags.fetch_and(page.ppn, ~PG_REMOVAL)

    def _drop_held(self, page: Page) -> int:
        """Take a held page past the end out of the map; 1 if we did.

        The page lock first, as Linux's truncate locks each page: a readpage
        or a writepage in flight finishes before the page goes, so no
        writepage that read the old size writes its bytes after the blocks
        under it are freed (ext2).  Its dirty bit goes (its bytes are past
        the end), it leaves the tree, the policy and the count, and it is
        marked detached (page.error): whoever puts the last reference, us or
        its holder, frees the frame (PageMap.put_page)."""
        lock_page(page)
        dropped = 0
        try:
            with self.lock:
                if self.tree.lookup(page.index) == page.ppn:
                    self.tree.delete(page.index)
                    self.num_pages -= 1
                    if self.lru is not None:
                        self.lru.removed(page)
                    self.flags.fetch_and(page.ppn, ~(PG_DIRTY | PG_PAGEMAP))
                    self._unmap_again(page)
                    page.error = KernelError(
                        f"{self.name}: page {page.index} was dropped by truncate while held",
                        errno=errno.ENXIO,
                    )
                    dropped = 1
                else:
                    # A failed read took it out already; that loader's mark stays.
                    self.flags.fetch_and(page.ppn, ~PG_REMOVAL)
        finally:
            unlock_page(page)
        self.put_page(page)
        return dropped
