"""Mutants of the page map's own protocol (kernel/pagemap.py, slot.py): a
lookup's reference and REMOVAL, a loader's wait and re-check, removal's
marking and freeing, writeback's PG_DIRTY, and a failed read or write.

Rules: as every family (check/mutants/base.py): a mutant replaces a method of
PageMap (or of the class its `target` names) for the length of `applied()`;
the budget is DPOR's at bound 2.  The order of PAGEMAP_MUTANTS is part of the
one table's (check/mutants/__init__.py).
"""

from __future__ import annotations

from pagemap.check.mutants.base import Mutant
from pagemap.kernel.errors import AlreadyExists, IOFailure, KernelBug
from pagemap.kernel.page import (
    PG_DIRTY,
    PG_LOCKED,
    PG_PAGEMAP,
    PG_REMOVAL,
    PG_UPTODATE,
    Page,
)
from pagemap.kernel.pagemap import PageMap
from pagemap.kernel.slot import (
    PM_PPN_MASK,
    PM_REFCNT_ONE,
    PM_REMOVAL,
    slot_check_refcnt,
    slot_set_ppn,
    slot_set_removal,
)
from pagemap.kernel.writeback import Writeback


def _find_page_keeps_removal(self: PageMap, index: int) -> Page | None:
    with self.lock:
        tree_slot = self.tree.lookup_slot(index)
        if tree_slot is None:
            return None
        while True:
            old = tree_slot.load()
            ppn = old & PM_PPN_MASK
            if not ppn:
                return None
            if tree_slot.cas(old, old + PM_REFCNT_ONE):  # BUG: REMOVAL stays set
                return self.allocator.pages[ppn]


def _load_page(self: PageMap, index: int, recheck: bool, wait: bool) -> Page:
    """load_page with its wait for an up-to-date page, or its re-check after
    lock_page, optionally left out."""
    from pagemap.kernel.page import lock_page, unlock_page

    page = self._find_page(index)
    while page is None:
        page = self.allocator.alloc()
        page.flags.reset(PG_LOCKED | PG_PAGEMAP)
        self.allocator.frames.locks.reset(page.ppn, 0)
        try:
            self._insert_page(index, page)
        except AlreadyExists:
            page.flags.reset(0)
            self.allocator.frames.locks.reset(page.ppn, 1)
            self.allocator.decref(page)
            page = self._find_page(index)
            continue
        self._read_locked_page(page)
        return page
    if not wait or page.flags.load() & PG_UPTODATE:
        return page
    lock_page(page)
    if recheck and page.flags.load() & PG_UPTODATE:
        unlock_page(page)
        return page
    if page.error is not None:
        unlock_page(page)
        self.put_page(page)
        raise IOFailure("read failed in another loader")
    self._read_locked_page(page)
    return page


def _load_skips_recheck(self: PageMap, index: int) -> Page:
    return _load_page(self, index, recheck=False, wait=True)


def _load_no_wait(self: PageMap, index: int) -> Page:
    return _load_page(self, index, recheck=True, wait=False)


def _free_marked_after_reuse(
    self: PageMap, lo: int, hi: int, indices: list[int] | None = None
) -> int:
    nr_removed = 0
    for i, ppn in self._items(lo, hi, indices):
        tree_slot = self.slots.ref(ppn)
        old = tree_slot.load()
        page = self._slot_get_page(old)
        if page is None or not page.flags.load() & PG_REMOVAL:
            continue
        if slot_check_refcnt(old):  # BUG: no check that REMOVAL is still set
            page.flags.fetch_and(~PG_REMOVAL)
            continue
        if not tree_slot.cas(old, slot_set_ppn(old, 0)):
            page.flags.fetch_and(~PG_REMOVAL)
            continue
        self.tree.delete(i)
        page.flags.store(0)
        if self.lru is not None:
            self.lru.removed(page)
        self.allocator.decref(page)
        nr_removed += 1
    self.num_pages -= nr_removed
    return nr_removed


def _mark_referenced(
    self: PageMap,
    lo: int,
    hi: int,
    respect_pins: bool = True,
    indices: list[int] | None = None,
) -> None:
    for _i, ppn in self._items(lo, hi, indices):
        tree_slot = self.slots.ref(ppn)
        old = tree_slot.load()
        page = self._slot_get_page(old)
        if page is None:
            continue
        # BUG: marks pages whose slot has references
        if not tree_slot.cas(old, slot_set_removal(old)):
            continue
        page.flags.fetch_or(PG_REMOVAL)


def _remove_contig_unguarded(self: PageMap, index: int, nr_pages: int) -> int:
    lo, hi = self._check_range(index, nr_pages)
    if lo >= hi:
        return 0
    return self._remove_contig(lo, hi)  # BUG: no single-remover flag


def _writeback_page_clears_late(self: PageMap, page: Page) -> bool:
    from pagemap.kernel.page import lock_page, unlock_page

    lock_page(page)
    try:
        if not page.flags.load() & PG_DIRTY:
            return False
        self.ops.writepage(self, page)
        page.flags.fetch_and(~PG_DIRTY)  # BUG: a store during writepage is forgotten
        return True
    finally:
        unlock_page(page)


def _read_locked_page(self: PageMap, page: Page, delete: bool, unlock: bool) -> None:
    from pagemap.kernel.page import unlock_page

    try:
        self.ops.readpage(self, page)
    except Exception as exc:
        page.error = exc
        if delete:
            with self.lock:
                if self.tree.delete(page.index) != page.ppn:
                    raise KernelBug("not in the tree") from exc
                self.num_pages -= 1
                if self.lru is not None:
                    self.lru.removed(page)
            page.flags.fetch_and(~PG_PAGEMAP)
        if unlock:
            unlock_page(page)
        self.put_page(page)
        raise
    unlock_page(page)


def _eio_leaves_page(self: PageMap, page: Page) -> None:
    _read_locked_page(self, page, delete=False, unlock=True)


def _eio_keeps_lock(self: PageMap, page: Page) -> None:
    _read_locked_page(self, page, delete=True, unlock=False)


_real_write_back_marked = PageMap._write_back_marked


def _write_back_error_frees(
    self: PageMap, lo: int, hi: int, indices: list[int] | None = None
) -> tuple[list[Page], OSError | None]:
    failed, first_error = _real_write_back_marked(self, lo, hi, indices)
    for page in failed:
        if page.tree_slot is not None:
            page.tree_slot.fetch_or(PM_REMOVAL)  # BUG: the unwritten page is freed
    return failed, first_error


def _find_run_keeps_removal(self: PageMap, index: int, n: int, found: list[Page]) -> None:
    for i in range(index, index + n):
        ppn = self.tree.lookup(i)
        if not ppn or not self.flags.load(ppn) & PG_UPTODATE:
            return
        while True:
            old = self.slots.load(ppn)
            if not old & PM_PPN_MASK:
                return
            if self.slots.cas(ppn, old, old + PM_REFCNT_ONE):  # BUG: REMOVAL stays set
                break
        found.append(self.allocator.pages[ppn])


PAGEMAP_MUTANTS = (
    Mutant(
        "lookup-keeps-removal",
        "a lookup takes its reference but leaves REMOVAL set",
        "write-remove",
        {"_find_page": _find_page_keeps_removal},
        budget=100,
    ),
    Mutant(
        "load-skips-recheck",
        "a loader that slept on lock_page reads the page again without re-checking",
        "load-race",
        {"load_page": _load_skips_recheck},
        budget=500,
    ),
    Mutant(
        "load-no-wait",
        "a loader returns a page it found before the page is up to date",
        "load-race",
        {"load_page": _load_no_wait},
        budget=500,
    ),
    Mutant(
        "free-after-reuse",
        "the remover frees a page whose REMOVAL a user cleared",
        "write-remove",
        {"_free_marked": _free_marked_after_reuse},
        budget=2500,
    ),
    Mutant(
        "mark-referenced",
        "the remover marks pages that have slot references",
        "write-remove",
        {"_mark_for_removal": _mark_referenced},
        budget=400,
    ),
    Mutant(
        "two-removers",
        "remove_contig lets a second remover in",
        "two-removers",
        {"remove_contig": _remove_contig_unguarded},
        budget=200,
    ),
    Mutant(
        "dirty-cleared-late",
        "writeback clears PG_DIRTY after writepage, forgetting stores made meanwhile",
        "writeback-remove",
        {"_writeback_page": _writeback_page_clears_late},
        budget=1200,
        target=Writeback,
    ),
    Mutant(
        "eio-leaves-page",
        "a failed readpage leaves its page in the tree",
        "eio-load",
        {"_read_locked_page": _eio_leaves_page},
        budget=10,
    ),
    Mutant(
        "eio-keeps-lock",
        "a failed readpage leaves its page locked",
        "eio-load",
        {"_read_locked_page": _eio_keeps_lock},
        budget=100,
    ),
    Mutant(
        "writeback-error-frees",
        "removal frees a page whose writeback failed",
        "eio-writeback",
        {"_write_back_marked": _write_back_error_frees},
        budget=10,
    ),
    Mutant(
        "run-keeps-removal",
        "a sequential read takes a run of pages but leaves their REMOVAL set",
        "read-run-remove",
        {"_find_run_locked": _find_run_keeps_removal},
        budget=2500,
    ),
)
