"""Runs of pages: pm_find_page for index, index+1, ... under one hold of
the map lock (find_run), and their put (put_run), for sequential reads.

Part of PageMap: kernel/pagemap.py mixes this class in and sets its fields.
Rules: a run takes each page exactly as PageMap._find_page takes one (the
slot reference and the clearing of REMOVAL in one CAS, the map lock held),
so a remover racing the run spares what it found; it stops at the first
index not cached or still being read (lookup's path waits for those).
Every page of a run goes back through put_run, with no lock held.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pagemap.kernel.page import PG_UPTODATE, Page, PageAllocator
from pagemap.kernel.radix import RADIX_FANOUT, RadixTree
from pagemap.kernel.removal import PageMapStats
from pagemap.kernel.slot import (
    PM_PPN_MASK,
    PM_REFCNT_ONE,
    PM_REFCNT_SHIFT,
    PM_REMOVAL,
    slot_dec_refcnt,
    slot_inc_refcnt,
)
from pagemap.sync.arrays import AtomicArray
from pagemap.sync.locks import SpinLock

_NOT_REMOVAL = ~PM_REMOVAL


class FindRun:
    """find_run and put_run of a page map."""

    # What runs use of their page map: fields PageMap.__init__ sets.
    lock: SpinLock
    tree: RadixTree
    slots: AtomicArray
    flags: AtomicArray
    allocator: PageAllocator
    stats: PageMapStats
    _errors: dict[int, Exception]  # pages whose read failed, by frame

    if TYPE_CHECKING:

        def _free_detached(self, page: Page) -> None: ...

    def find_run(self, index: int, n: int) -> list[Page]:
        """pm_find_page for index, index+1, ... under one hold of the map
        lock: the up-to-date pages cached from `index` on, each with one more
        slot reference, stopping at the first index with none (or with one
        still being read), and after `n`.  For sequential reads: one lock
        round trip for a run rather than one a page.  Each page is taken
        exactly as _find_page takes it (REMOVAL cleared in the CAS that takes
        the reference), so a remover racing the run spares what it found;
        give them back with put_run.  An error (RefcountOverflow) gives back
        what was taken before it passes on."""
        found: list[Page] = []
        self.lock.acquire()
        try:
            self._find_run_locked(index, n, found)
        except BaseException:
            self.lock.release()
            self.put_run(found)
            raise
        self.stats.hits += len(found)
        self.lock.release()
        return found

    def _find_run_locked(self, index: int, n: int, found: list[Page]) -> None:
        slots, flags, pages = self.slots, self.flags, self.allocator.pages
        for base, leaf in self.tree.leaves(index, index + n):
            j = index + len(found) - base
            if j < 0:
                return  # a hole before this leaf: the run ended
            while j < RADIX_FANOUT and len(found) < n:
                ppn = leaf[j]
                # Not cached, or still being read: lookup's path waits for it.
                if not ppn or not flags.load(ppn) & PG_UPTODATE:
                    return
                while True:
                    old = slots.load(ppn)
                    if not old & PM_PPN_MASK:
                        return
                    if slots.cas(ppn, old, slot_inc_refcnt(old & _NOT_REMOVAL)):
                        break
                found.append(pages[ppn])
                j += 1
            if j < RADIX_FANOUT:
                return

    def put_run(self, run: list[Page]) -> None:
        """put_page of each page find_run handed out."""
        olds = self.slots.fetch_add_many([page.ppn for page in run], -PM_REFCNT_ONE)
        for page, old in zip(run, olds, strict=True):
            refs = old >> PM_REFCNT_SHIFT
            if refs == 1:
                if self._errors and page.error is not None:
                    self._free_detached(page)
            elif not refs:
                self.slots.fetch_add(page.ppn, PM_REFCNT_ONE)
                slot_dec_refcnt(old)  # refuses, with KernelBug: a put without a get
