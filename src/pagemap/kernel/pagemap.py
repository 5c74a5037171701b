"""The page map: a file's (or block device's) cache of pages.

This is the seed, Akaros's kern/src/pagemap.c, function for function, over
the files below:

    pm_slot_* helpers             kernel/slot.py
    pm_add_vmr / pm_remove_vmr    kernel/rmap.py, the reverse map (mixed in),
    vmr_has_page_idx, ...         with the one walk over it
    pm_init                       PageMap.__init__
    pm_find_page                  PageMap._find_page
    pm_insert_page                PageMap._insert_page
    pm_put_page                   PageMap.put_page
    pm_load_page                  PageMap.load_page (over PageMap.lookup)
    (a run of pm_find_page)       PageMap.find_run, PageMap.put_run:
                                  kernel/runs.py (mixed in)
    pm_remove_contig and passes   kernel/removal.py (mixed into PageMap); the
                                  one fused pass (clean pages of an unmapped
                                  range) is explained there; its PTE passes
                                  in kernel/unmap_marked.py, and truncation
                                  (PageMap.truncate_pages) in
                                  kernel/truncate_pages.py
    print_page_map_info           PageMap.info: kernel/pagemap_info.py (mixed
                                  in), with the accounting oracle's check
    (later Akaros)                PageMap.writeback: kernel/writeback.py
                                  (mixed in), with the per-page write

Where the 2014 code had a gap, the fix is named at the spot (see docs/seed.md).

Rules.  `lock` (pm_lock) guards the tree's shape, the VMR list (the reverse
map) and nr_pages.  Each slot is an atomic word holding the page's ppn, a
REMOVAL bit and a refcount of tasks using the page right now (kernel/slot.py).
A finder bumps the refcount and clears REMOVAL in one CAS; a remover marks
REMOVAL only on slots with refcount 0 and frees a page only if REMOVAL is
still set at the end, so any use in between aborts the removal of that page.
A caller of lookup or load_page gets one slot reference and gives it back
with put_page; no lock is held between the two.  Nothing sleeps under `lock`.

The public calls check their arguments (kernel/owner.py) where it costs the
hit path nothing: an index when a page must be inserted or when the lookup
fails on its type, a page given to put_page by one comparison of its map.
Once the machine is closed (`closed`; it emptied the map) a page that must be
read is AlreadyClosed (EBADF); put_page still gives back what was taken.
"""

from __future__ import annotations

from typing import Literal, Protocol, overload

from pagemap.kernel.errors import (
    AlreadyClosed,
    AlreadyExists,
    InvalidArgument,
    IOFailure,
    KernelBug,
)
from pagemap.kernel.errseq import WritebackErrors
from pagemap.kernel.invalidate import InvalidateLock
from pagemap.kernel.owner import as_int, check_page
from pagemap.kernel.page import (
    PG_LOCKED,
    PG_PAGEMAP,
    PG_UPTODATE,
    Page,
    PageAllocator,
    lock_page,
    unlock_page,
)
from pagemap.kernel.pagemap_info import PageMapInfo
from pagemap.kernel.radix import RADIX_MAX_INDEX, RadixTree
from pagemap.kernel.removal import Lru, PageMapStats
from pagemap.kernel.rmap import ReverseMap, VMRegion
from pagemap.kernel.runs import FindRun
from pagemap.kernel.slot import (
    PM_PPN_MASK,
    PM_REFCNT_ONE,
    PM_REFCNT_SHIFT,
    PM_REMOVAL,
    encode_slot,
    slot_dec_refcnt,
    slot_inc_refcnt,
)
from pagemap.kernel.truncate_pages import TruncatePages
from pagemap.kernel.writeback import Writeback
from pagemap.sync.core import WRITE
from pagemap.sync.executor import Executor

_NOT_REMOVAL = ~PM_REMOVAL


class PageMapOps(Protocol):
    """page_map_operations: how a host fills and writes back its pages."""

    def readpage(self, pm: PageMap, page: Page) -> None:
        """Fill page.data from the backing store and set PG_UPTODATE."""

    def writepage(self, pm: PageMap, page: Page) -> None:
        """Write page.data to the backing store."""


class PageMap(TruncatePages, Writeback, ReverseMap, FindRun, PageMapInfo):
    """struct page_map."""

    def __init__(
        self,
        executor: Executor,
        allocator: PageAllocator,
        ops: PageMapOps,
        host: object = None,
        name: str = "pm",
    ) -> None:
        # pm_init.  `host` is the inode or block device; an uncounted reference.
        self.host = host
        self.name = name
        self.executor = executor
        self.ops: PageMapOps = ops
        self.allocator = allocator
        # Slot words live in the frame table, one per frame; the tree maps an
        # index to the frame whose slot it is (kernel/radix.py).
        self.slots = allocator.frames.slots
        self.flags = allocator.frames.flags
        self._errors = allocator.frames.errors  # pages whose read failed, by frame
        self.tree = RadixTree(self.slots, f"{name}.tree")
        self.num_pages = 0
        self.lock = executor.spinlock(f"{name}.lock")
        self.vmrs: list[VMRegion] = []
        self.removal = executor.atomic(0, f"{name}.removal")
        # Statistics.  Each is bumped where a lock already serialises it (the
        # map lock, or the one remover), so they are exact under threads too.
        self.stats = PageMapStats()
        # The machine's reclaim, told of every page that enters or leaves the
        # map (with `lock` held), so its policy knows what may be evicted.
        self.lru: Lru | None = None
        # Set once, by Machine.close(), after it wrote back and dropped every page.
        self.closed = False
        # Where we fixed the 2014 seed (docs/seed.md), on switches that are on;
        # a scenario of `pagemap check --known` turns one off to put it back.
        self.unmap_every_vmr = True  # removal's _unmap_marked
        self.atomic_pte_clear = True  # removal's _pte_mark_not_present
        self.wb_err = WritebackErrors(executor, name)  # kernel/errseq.py
        self.invalidate_lock = InvalidateLock(executor, name)  # kernel/invalidate.py
        self.mkclean_locks_pte = True  # 479db0bf408e: rmap's page_mkclean
        # "wp" or "dbit" (kernel/mkwrite.py); set by Machine.page_map().
        self.dirty_tracking = "dbit"

    @property
    def nr_pages(self) -> int:
        """pm_num_pages."""
        return self.num_pages

    def __repr__(self) -> str:
        return f"PageMap({self.name}, {self.num_pages} pages)"

    # -- finding a page ----------------------------------------------------------
    def _find_page(self, index: int) -> Page | None:
        """pm_find_page: the page at `index` with one more slot reference, or None.

        Taking the reference clears REMOVAL in the same CAS: a remover that
        marked the slot earlier sees the bit gone and spares the page (the
        write-remove scenario; its lookup-keeps-removal mutant leaves the bit
        set and is caught freeing a page in use).
        """
        lock = self.lock
        lock.acquire()
        try:
            ppn = self.tree.lookup(index)
            if not ppn:
                return None
            slots = self.slots
            while True:
                old = slots.load(ppn)
                if not old & PM_PPN_MASK:
                    return None
                if slots.cas(ppn, old, slot_inc_refcnt(old & _NOT_REMOVAL)):
                    break
            if old & PM_PPN_MASK != ppn:
                raise KernelBug(
                    f"{self.name}: slot {index} names frame {old & PM_PPN_MASK}, "
                    f"not its own frame {ppn}"
                )
            self.stats.hits += 1
            return self.allocator.pages[ppn]
        finally:
            lock.release()

    def _insert_page(self, index: int, page: Page) -> None:
        """Put a fresh page in the tree with one slot reference held.

        On success the caller's page reference passes to the map, and its slot
        reference keeps the page alive.  AlreadyExists if the index is taken.
        """
        with self.lock:
            # The page's map, as reclaim reads it (PageAllocator.mapping_of).
            self.executor.touch(("page.mapping", page.ppn), WRITE)
            page.mapping = self
            page.index = index
            # A fresh frame: nobody else can reach its slot word yet.
            self.slots.reset(page.ppn, encode_slot(page.ppn, removal=False, refcnt=1))
            self.tree.insert(index, page.ppn)
            self.num_pages += 1
            self.stats.misses += 1
            if self.lru is not None:
                self.lru.inserted(page)

    def put_page(self, page: Page) -> None:
        """pm_put_page: drop one slot reference; the map keeps its page."""
        if page.__class__ is not Page or page.mapping is not self:
            self._check_foreign(page, "put_page")  # returns only for a page of no map
            raise KernelBug(f"{self.name}: put_page of frame {page.ppn}, which is in no page map")
        ppn = page.ppn
        old = self.slots.fetch_add(ppn, -PM_REFCNT_ONE)  # one atomic add, as in the seed
        refs = old >> PM_REFCNT_SHIFT  # slot_check_refcnt, inline on the hot path
        if refs == 1:
            if self._errors and page.error is not None:
                # A failed load took the page out of the tree; the last user frees it.
                self._free_detached(page)
        elif not refs:
            self.slots.fetch_add(ppn, PM_REFCNT_ONE)  # undo: there was no reference to drop
            slot_dec_refcnt(old)  # refuses, with KernelBug: a put without a get

    def _check_foreign(self, page: object, op: str) -> None:
        """TypeError, WrongMachine or EINVAL for a page that is not one of
        ours; a page of no map at all is left to the caller (a KernelBug)."""
        if not isinstance(page, Page):
            raise TypeError(f"{self.name}: {op}: expected a Page, not {type(page).__name__}")
        check_page(self.allocator, page, f"{self.name}: {op}")
        if page.mapping is not None:
            raise InvalidArgument(
                f"{self.name}: {op} of page {page.index} of {page.mapping.name}, another page map"
            )

    def _check_index(self, index: object, op: str) -> int:
        """`index` as an int in the tree's range; TypeError or EINVAL."""
        if type(index) is int and 0 <= index <= RADIX_MAX_INDEX:
            return index
        index = as_int(index, f"{self.name}: {op}", "the page index")
        if not 0 <= index <= RADIX_MAX_INDEX:
            raise InvalidArgument(
                f"{self.name}: page index {index} is outside 0..{RADIX_MAX_INDEX}"
            )
        return index

    # -- the lookup path -----------------------------------------------------------
    @overload
    def lookup(self, index: int, load: Literal[True] = ...) -> tuple[Page, bool]: ...

    @overload
    def lookup(self, index: int, load: bool) -> tuple[Page, bool] | None: ...

    def lookup(self, index: int, load: bool = True) -> tuple[Page, bool] | None:
        """Find, or load, and wait until up to date: the page at `index` with
        one slot reference, and whether it had to be read (True: this task
        read it, or slept while another did, as in a major fault; False: it
        was found up to date, a minor one).

        However many tasks race here, readpage runs once: the first inserts a
        locked, not-up-to-date page and fills it; the rest find it, sleep on
        the page lock, and re-check.  Raises OutOfMemory with nothing changed,
        or the readpage error (in every racing loader) with the page gone.
        With `load` False nothing is read: a page not cached, or whose read
        failed in another task, gives None.
        """
        index = self._check_index(index, "lookup")
        page = self._find_page(index)
        if page is not None and self.flags.load(page.ppn) & PG_UPTODATE:
            return page, False
        page = self._read_or_wait(index, page, load)
        return None if page is None else (page, True)

    def lookup_found(self, index: int, page: Page | None) -> tuple[Page, bool]:
        """The rest of lookup(index) for a caller whose own _find_page gave
        `page` (None, or not up to date): the VFS's hit path inlines the hit."""
        if page is not None and self.flags.load(page.ppn) & PG_UPTODATE:
            return page, False
        found = self._read_or_wait(index, page, True)
        assert found is not None  # with `load`, it reads or raises
        return found, True

    def load_page(self, index: int) -> Page:
        """pm_load_page: an up-to-date page for `index`, with one slot
        reference.  lookup() for callers that need not know whether it read,
        with the hit spared the tuple (it is the page cache's hot path)."""
        try:
            page = self._find_page(index)
        except TypeError:
            self._check_index(index, "load_page")  # says what is wrong with it
            raise
        if page is not None and self.flags.load(page.ppn) & PG_UPTODATE:
            return page
        page = self._read_or_wait(index, page, True)
        assert page is not None  # with `load`, it reads or raises
        return page

    def _read_or_wait(self, index: int, page: Page | None, load: bool) -> Page | None:
        """The rest of lookup, for a page `_find_page` did not find up to date
        (None if it found none): read it in, or wait for whoever is reading."""
        while page is None:
            if not load:
                return None
            self.invalidate_lock.down_read()  # no page added while a range is punched
            try:
                page = self._insert_locked(index)
                if page is not None:
                    self._read_locked_page(page)
                    return page
            finally:
                self.invalidate_lock.up_read()
            page = self._find_page(index)  # someone inserted first: use theirs
            if page is not None and page.flags.load() & PG_UPTODATE:
                return page
        lock_page(page)
        # Re-check: we most likely slept while another loader filled it, and
        # reading again could clobber newer writes (the load-race scenario; its
        # load-skips-recheck mutant reads twice and is caught).
        if page.flags.load() & PG_UPTODATE:
            unlock_page(page)
            return page
        if page.error is not None:
            # The loader failed and took the page out of the map (see below).
            err = page.error
            unlock_page(page)
            self.put_page(page)
            if not load:
                return None
            code = getattr(err, "errno", None)
            raise IOFailure(
                f"{self.name}: reading page {index} failed in another loader: {err}",
                errno=code if isinstance(code, int) and code > 0 else IOFailure.default_errno,
            ) from err
        self._read_locked_page(page)
        return page

    def find_page(self, index: int) -> Page | None:
        """The cached page at `index`, up to date, with a slot reference; None
        if it is not cached.  Never reads, but waits for a read in flight."""
        found = self.lookup(index, load=False)
        return None if found is None else found[0]

    def _insert_locked(self, index: int) -> Page | None:
        """A fresh page, locked and not up to date, inserted at `index` with a
        slot reference; None if someone else inserted one first (a benign race)."""
        index = self._check_index(index, "load_page")
        if self.closed:
            raise AlreadyClosed(f"{self.name}: a page must be read, but the machine is closed")
        page = self.allocator.alloc()
        # Not UPTODATE: once inserted others can find it, and it is not filled;
        # they sleep on its lock until it is (the load-race scenario; its
        # load-no-wait mutant hands out the page unfilled and is caught).
        frames = self.allocator.frames
        frames.flags.reset(page.ppn, PG_LOCKED | PG_PAGEMAP)
        frames.locks.reset(page.ppn, 0)  # born locked, by us
        try:
            self._insert_page(index, page)
        except AlreadyExists:
            self._free_detached(page)
            return None
        except Exception:
            self._free_detached(page)
            raise
        return page

    def _read_locked_page(self, page: Page) -> None:
        """readpage on a page we hold locked and referenced; unlock it after.

        The seed asserted that readpage cannot fail.  Here a failure marks the
        page, takes it out of the tree (new loaders start afresh), and wakes
        the tasks asleep on its lock, who see the mark and fail too.  The frame
        is freed by whoever drops the last slot reference (put_page).  Shown by
        test_readpage_error_reaches_every_waiting_loader and the eio-load scenario.
        """
        try:
            self.ops.readpage(self, page)
            if not page.flags.load() & PG_UPTODATE:
                raise KernelBug(
                    f"{self.name}: readpage of page {page.index} left it not up to date"
                )
        except Exception as exc:
            page.error = exc
            with self.lock:
                if self.tree.delete(page.index) != page.ppn:
                    raise KernelBug(
                        f"{self.name}: failed page {page.index} was not in the tree"
                    ) from exc
                self.num_pages -= 1
                if self.lru is not None:
                    self.lru.removed(page)
            page.flags.fetch_and(~PG_PAGEMAP)
            unlock_page(page)
            self.put_page(page)
            if isinstance(exc, OSError) and isinstance(exc.errno, int) and exc.errno > 0:
                raise
            raise IOFailure(f"{self.name}: readpage of page {page.index} failed: {exc!r}") from exc
        unlock_page(page)

    def _free_detached(self, page: Page) -> None:
        """Free a page that is in no tree, and that nobody else can reach."""
        frames = self.allocator.frames
        frames.flags.reset(page.ppn, 0)
        frames.locks.reset(page.ppn, 1)
        self.allocator.decref(page)


__all__ = ["PageMap", "PageMapOps"]
