"""The page map: a file's (or block device's) cache of pages.

This is the seed, Akaros's kern/src/pagemap.c, function for function:

    pm_add_vmr / pm_remove_vmr    PageMap.add_vmr / remove_vmr
    pm_slot_* helpers             slot_* functions below
    pm_init                       PageMap.__init__
    pm_find_page                  PageMap._find_page
    pm_insert_page                PageMap._insert_page
    pm_put_page                   PageMap.put_page
    pm_load_page                  PageMap.load_page
    vmr_has_page_idx, ...         vmr_has_page_idx, vmr_idx_to_va, vmr_get_end_idx
    __pm_mark_not_present         _pte_mark_not_present
    __pm_mark_dirty_pgs_unmap     _pte_unmap_keep_dirty (also serves __pm_mark_unmap)
    shootdown_and_reset_ptrstore  _shootdown_and_reset
    pm_remove_contig              PageMap.remove_contig
    print_page_map_info           PageMap.info
    (later Akaros)                PageMap.writeback

Where the 2014 code had a gap, the fix is named at the spot (see docs/seed.md).

Synchronisation, in one paragraph.  `lock` (pm_lock) guards the tree's
shape, the VMR list and nr_pages.  Each slot is an atomic word holding the
page's ppn, a REMOVAL bit and a refcount of tasks using the page right now.
A finder bumps the refcount and clears REMOVAL in one CAS; a remover marks
REMOVAL only on slots with refcount 0 and frees a page only if REMOVAL is
still set at the end, so any use in between aborts the removal of that page.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from pagemap.hw.memory import PGSHIFT
from pagemap.hw.mmu import PTE_D, PTE_P, pte_ppn
from pagemap.kernel.errors import (
    AlreadyExists,
    InvalidArgument,
    IOFailure,
    KernelBug,
    KernelError,
    RefcountOverflow,
)
from pagemap.kernel.mman import MAP_LOCKED
from pagemap.kernel.page import (
    PG_DIRTY,
    PG_LOCKED,
    PG_PAGEMAP,
    PG_REMOVAL,
    PG_UPTODATE,
    Page,
    PageAllocator,
    lock_page,
    unlock_page,
)
from pagemap.kernel.radix import RADIX_MAX_INDEX, RadixTree
from pagemap.sync.atomic import AtomicWord, StatCounter
from pagemap.sync.executor import Executor
from pagemap.sync.locks import SpinLock

# -- the slot word ------------------------------------------------------------
#
#   bit 63      53  52  51                      0
#      | refcnt:11 | R |        ppn:52          |
#
PM_FLAGS_SHIFT = 52
PM_REFCNT_SHIFT = PM_FLAGS_SHIFT + 1
PM_REMOVAL = 1 << PM_FLAGS_SHIFT
PM_PPN_MASK = (1 << PM_FLAGS_SHIFT) - 1
PM_REFCNT_ONE = 1 << PM_REFCNT_SHIFT
PM_REFCNT_MAX = (1 << (64 - PM_REFCNT_SHIFT)) - 1  # 2047 tasks at once

# How many processes, or dirty pages, removal batches before acting (PTR_ARR_LEN).
PTR_ARR_LEN = 10


def slot_check_removal(slot_val: int) -> bool:
    return bool(slot_val & PM_REMOVAL)


def slot_set_removal(slot_val: int) -> int:
    return slot_val | PM_REMOVAL


def slot_clear_removal(slot_val: int) -> int:
    return slot_val & ~PM_REMOVAL


def slot_check_refcnt(slot_val: int) -> int:
    return slot_val >> PM_REFCNT_SHIFT


def slot_inc_refcnt(slot_val: int) -> int:
    """One more user.  The seed let the 11-bit count wrap into nothing; we refuse."""
    if slot_val >> PM_REFCNT_SHIFT == PM_REFCNT_MAX:
        raise RefcountOverflow(
            f"page map slot already has {PM_REFCNT_MAX} references, the most its "
            f"{64 - PM_REFCNT_SHIFT}-bit count can hold; a further reference would wrap to 0"
        )
    return slot_val + PM_REFCNT_ONE


def slot_dec_refcnt(slot_val: int) -> int:
    if not slot_val >> PM_REFCNT_SHIFT:
        raise KernelBug("page map slot refcount would go below zero (a put without a get)")
    return slot_val - PM_REFCNT_ONE


def slot_get_ppn(slot_val: int) -> int:
    """The ppn in the slot; 0 means no page (frame 0 is never allocated)."""
    return slot_val & PM_PPN_MASK


def slot_set_ppn(slot_val: int, ppn: int) -> int:
    """Put `ppn` (0 for "no page") in the slot, keeping REMOVAL and refcount.

    The seed computed page2ppn(NULL) when clearing a slot, which is garbage;
    here "no page" is simply ppn 0.
    """
    if not 0 <= ppn <= PM_PPN_MASK:
        raise InvalidArgument(f"ppn {ppn} does not fit the slot's {PM_FLAGS_SHIFT} bits")
    return ppn | (slot_val & ~PM_PPN_MASK)


class SlotWord(NamedTuple):
    refcnt: int
    removal: bool
    ppn: int

    def __str__(self) -> str:
        return f"{self.refcnt}|{'R' if self.removal else '-'}|{self.ppn}"


def encode_slot(ppn: int, removal: bool = False, refcnt: int = 0) -> int:
    if not 0 <= refcnt <= PM_REFCNT_MAX:
        raise InvalidArgument(f"slot refcount {refcnt} is outside 0..{PM_REFCNT_MAX}")
    return slot_set_ppn((refcnt << PM_REFCNT_SHIFT) | (PM_REMOVAL if removal else 0), ppn)


def decode_slot(slot_val: int) -> SlotWord:
    return SlotWord(
        slot_check_refcnt(slot_val), slot_check_removal(slot_val), slot_get_ppn(slot_val)
    )


# -- what the page map needs of its host, and of the memory regions -----------


class PageMapOps(Protocol):
    """page_map_operations: how a host fills and writes back its pages."""

    def readpage(self, pm: PageMap, page: Page) -> None:
        """Fill page.data from the backing store and set PG_UPTODATE."""

    def writepage(self, pm: PageMap, page: Page) -> None:
        """Write page.data to the backing store."""


class AddressSpace(Protocol):
    """What removal needs of a process: its PTEs and its TLBs."""

    pid: int
    pte_lock: SpinLock

    def ptes(self, va_lo: int, va_hi: int) -> Iterable[AtomicWord]:
        """The non-empty PTE words for pages in [va_lo, va_hi)."""
        ...

    def tlb_shootdown(self) -> None:
        """Remove this address space's entries from every core's TLB."""


class VMRegion(Protocol):
    """What removal needs of a memory region mapping this page map's object."""

    base: int
    end: int
    foff: int
    prot: int
    flags: int

    @property
    def proc(self) -> AddressSpace: ...


def vmr_has_page_idx(vmr: VMRegion, pg_idx: int) -> bool:
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


# -- the page map --------------------------------------------------------------


@dataclass
class PageMapStats:
    hits: int = 0  # lookups that found the page cached (under the map lock)
    misses: int = 0  # pages inserted to be read (under the map lock)
    removals: int = 0  # remove_contig calls that ran the protocol (one remover)
    removed: int = 0  # pages freed by them
    writeback_errors: int = 0  # pages kept because their writeback failed
    writebacks: StatCounter = field(default_factory=StatCounter)  # pages written


class PageMap:
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
        self.ops = ops
        self.allocator = allocator
        self.tree = RadixTree(executor.atomic, f"{name}.slot")
        self.num_pages = 0
        self.lock = executor.spinlock(f"{name}.lock")
        self.vmrs: list[VMRegion] = []
        self.removal = executor.atomic(0, f"{name}.removal")
        # Statistics.  Each is bumped where a lock already serialises it (the
        # map lock, or the one remover), so they are exact under threads too.
        self.stats = PageMapStats()

    @property
    def nr_pages(self) -> int:
        """pm_num_pages."""
        return self.num_pages

    def __repr__(self) -> str:
        return f"PageMap({self.name}, {self.num_pages} pages)"

    # -- the reverse map -------------------------------------------------------
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

    # -- slots -----------------------------------------------------------------
    def _slot_get_page(self, slot_val: int) -> Page | None:
        ppn = slot_val & PM_PPN_MASK
        return self.allocator.pages[ppn] if ppn else None

    def _find_page(self, index: int) -> Page | None:
        """The page at `index` with one more slot reference, or None.

        Taking the reference clears REMOVAL in the same CAS: a remover that
        marked the slot earlier sees the bit gone and spares the page.
        """
        lock = self.lock
        lock.acquire()
        try:
            tree_slot = self.tree.lookup_slot(index)
            if tree_slot is None:
                return None
            while True:
                old = tree_slot.load()
                ppn = old & PM_PPN_MASK
                if not ppn:
                    return None
                if old >> PM_REFCNT_SHIFT == PM_REFCNT_MAX:
                    slot_inc_refcnt(old)  # raises RefcountOverflow, saying why
                if tree_slot.cas(old, (old & ~PM_REMOVAL) + PM_REFCNT_ONE):
                    break
            page = self.allocator.pages[ppn]
            self.stats.hits += 1
            if page.tree_slot is not tree_slot:
                raise KernelBug(f"{self.name}: page {page.ppn} does not point back at slot {index}")
            return page
        finally:
            lock.release()

    def find_page(self, index: int) -> Page | None:
        """The cached page at `index` with a slot reference, or None; never
        loads.  For callers that only care about pages already cached."""
        return self._find_page(index)

    def _insert_page(self, index: int, page: Page) -> None:
        """Put a fresh page in the tree with one slot reference held.

        On success the caller's page reference passes to the map, and its slot
        reference keeps the page alive.  AlreadyExists if the index is taken.
        """
        with self.lock:
            page.mapping = self
            page.index = index
            slot_val = encode_slot(page.ppn, removal=False, refcnt=1)
            page.tree_slot = self.tree.insert(index, slot_val)
            self.num_pages += 1
            self.stats.misses += 1

    def put_page(self, page: Page) -> None:
        """Drop one slot reference (pm_put_page); the map keeps its page."""
        tree_slot = page.tree_slot
        if tree_slot is None:
            raise KernelBug(f"{self.name}: put_page of frame {page.ppn}, which is in no page map")
        old = tree_slot.fetch_add(-PM_REFCNT_ONE)
        refs = old >> PM_REFCNT_SHIFT
        if refs == 1:
            if page.error is not None:
                # A failed load took the page out of the tree; the last user frees it.
                self._free_detached(page)
        elif refs == 0:
            tree_slot.fetch_add(PM_REFCNT_ONE)
            raise KernelBug(f"{self.name}: put_page of page {page.index} with no reference held")

    # -- loading ---------------------------------------------------------------
    def load_page(self, index: int) -> Page:
        """An up-to-date page for `index`, with one slot reference (pm_load_page).

        However many tasks race here, readpage runs once: the first inserts a
        locked, not-up-to-date page and fills it; the rest find it, sleep on
        the page lock, and re-check.  Raises OutOfMemory with nothing changed,
        or the readpage error (in every racing loader) with the page gone.
        """
        if not 0 <= index <= RADIX_MAX_INDEX:
            raise InvalidArgument(
                f"{self.name}: page index {index} is outside 0..{RADIX_MAX_INDEX}"
            )
        page = self._find_page(index)
        while page is None:
            page = self.allocator.alloc()
            # Not UPTODATE: once inserted others can find it, and it is not filled.
            page.flags.reset(PG_LOCKED | PG_PAGEMAP)
            page.sem.reset(0)  # born locked, by us
            try:
                self._insert_page(index, page)
            except AlreadyExists:
                # Someone inserted first (a benign race): drop ours and use theirs.
                page.flags.reset(0)
                page.sem.reset(1)
                self.allocator.decref(page)
                page = self._find_page(index)
                continue
            except Exception:
                page.flags.reset(0)
                page.sem.reset(1)
                self.allocator.decref(page)
                raise
            self._read_locked_page(page)
            return page
        if page.flags.load() & PG_UPTODATE:
            return page
        lock_page(page)
        # Re-check: we most likely slept while another loader filled it, and
        # reading again could clobber newer writes.
        if page.flags.load() & PG_UPTODATE:
            unlock_page(page)
            return page
        if page.error is not None:
            # The loader failed and took the page out of the map (see below).
            err = page.error
            unlock_page(page)
            self.put_page(page)
            raise IOFailure(
                f"{self.name}: reading page {index} failed in another loader: {err}",
                errno=getattr(err, "errno", None) or IOFailure.default_errno,
            ) from err
        self._read_locked_page(page)
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
                if self.tree.delete(page.index) is not page.tree_slot:
                    raise KernelBug(
                        f"{self.name}: failed page {page.index} was not in the tree"
                    ) from exc
                self.num_pages -= 1
            page.flags.fetch_and(~PG_PAGEMAP)
            unlock_page(page)
            self.put_page(page)
            if isinstance(exc, OSError) and exc.errno:
                raise
            raise IOFailure(f"{self.name}: readpage of page {page.index} failed: {exc!r}") from exc
        unlock_page(page)

    def _free_detached(self, page: Page) -> None:
        page.flags.reset(0)
        self.allocator.decref(page)

    # -- writing back ----------------------------------------------------------
    def _writeback_page(self, page: Page) -> bool:
        """Write the page if dirty; True if it was written.

        The page lock is held from clearing PG_DIRTY until writepage returns,
        so two writebacks of one page never overlap, and an fsync that finds
        the page clean because a remover is mid-write sleeps until that write
        is done.  (The seed cleared PG_DIRTY under the map lock and wrote with
        no lock at all: an fsync could return before the remover's write landed,
        and an older copy could land after a newer one.)  Exercised by the
        writeback-remove scenario and test_writeback_racing_writers_loses_nothing;
        the dirty-cleared-late mutant breaks it and is caught.
        """
        lock_page(page)
        try:
            if not page.flags.fetch_and(~PG_DIRTY) & PG_DIRTY:
                return False
            try:
                self.ops.writepage(self, page)
            except BaseException:
                page.flags.fetch_or(PG_DIRTY)  # not written, so still dirty: nothing lost
                raise
            self.stats.writebacks.add(1)
            return True
        finally:
            unlock_page(page)

    def writeback(self, index: int, nr_pages: int) -> int:
        """Write back the dirty pages in [index, index + nr_pages), evicting none.

        Returns how many pages were written.  Behind msync and fsync.  On a
        writepage error the remaining pages are still tried, the failed ones
        stay dirty, and the first error is raised at the end.
        """
        lo, hi = self._check_range(index, nr_pages)
        with self.lock:
            indices = [i for i, _ in self.tree.items(lo, hi)]
        written = 0
        first_error: BaseException | None = None
        for i in indices:
            page = self._find_page(i)
            if page is None:
                continue
            try:
                if self._writeback_page(page):
                    written += 1
            except OSError as exc:
                first_error = first_error or exc
            finally:
                self.put_page(page)
        if first_error is not None:
            raise first_error
        return written

    # -- removal ---------------------------------------------------------------
    def _check_range(self, index: int, nr_pages: int) -> tuple[int, int]:
        if index < 0 or nr_pages < 0:
            raise InvalidArgument(
                f"{self.name}: page range start {index}, length {nr_pages}: neither may be negative"
            )
        # The seed asserted "til we figure out who validates"; we validate.
        return index, min(index + nr_pages, RADIX_MAX_INDEX + 1)

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
        # remover could not tell its marks from ours.
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

    def _pinned_ranges(self) -> list[tuple[int, int]]:
        return [(v.foff >> PGSHIFT, vmr_get_end_idx(v)) for v in self.vmrs if v.flags & MAP_LOCKED]

    def _mark_for_removal(self, lo: int, hi: int, respect_pins: bool = True) -> None:
        """Pass 1: set REMOVAL on every unpinned, unreferenced page in range."""
        pinned = self._pinned_ranges() if respect_pins else []
        for i, tree_slot in self.tree.items(lo, hi):
            # A pinned region's pages are off limits even if not faulted in yet.
            if pinned and any(a <= i < b for a, b in pinned):
                continue
            old = tree_slot.load()
            page = self._slot_get_page(old)
            if page is None:
                continue
            # Someone is using it; any later user clears REMOVAL and aborts us.
            if slot_check_refcnt(old):
                continue
            if not tree_slot.cas(old, slot_set_removal(old)):
                continue
            # The page's own bit is only for our convenience when we walk PTEs.
            page.flags.fetch_or(PG_REMOVAL)

    def _unmap_marked(self, lo: int, hi: int, include_pinned: bool = False) -> None:
        """Passes 2 and 3: unmap marked pages from every region, shoot down, and
        collect the dirty bits of every PTE we clear."""
        procs: list[AddressSpace] = []
        live = [
            (v, r)
            for v in self.vmrs
            if include_pinned or not v.flags & MAP_LOCKED
            if (r := vmr_overlap(v, lo, hi)) is not None
        ]
        for vmr, (a, b) in live:
            proc = vmr.proc
            with proc.pte_lock:
                for pte in proc.ptes(vmr_idx_to_va(vmr, a), vmr_idx_to_va(vmr, b - 1) + 1):
                    self._pte_mark_not_present(pte)
            # Batch the shootdowns, one per process; the VMR (so its process)
            # stays put while we hold `lock`, since munmap needs it to leave.
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
        for vmr, (a, b) in live:
            proc = vmr.proc
            # Whatever vm_prot says now: a concurrent mprotect may have just
            # downgraded a PTE that was written through a moment ago
            # (the mprotect-remove scenario).
            with proc.pte_lock:
                for pte in proc.ptes(vmr_idx_to_va(vmr, a), vmr_idx_to_va(vmr, b - 1) + 1):
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
            # Still the only remover, but new users may clear REMOVAL meanwhile.
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
        # REMOVAL, as a user would, and pass 5 will spare it.
        for page in failed:
            if page.tree_slot is not None:
                page.tree_slot.fetch_and(~PM_REMOVAL)
        return failed, first_error

    def _marked_page(self, index: int) -> Page | None:
        """The page at `index` if we marked it and nobody used it since.

        If somebody used it (their CAS cleared the slot's REMOVAL), we lost the
        race for it: we set PG_REMOVAL, so we clear it.
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
                # Used since we marked it.  (A count with REMOVAL still set breaks
                # the protocol; the seed warned and freed anyway, we spare it.)
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
        shrank) is about to put it, and nobody new can find a page past the end.
        """
        lo, hi = self._check_range(first_index, RADIX_MAX_INDEX + 1)
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

    # -- reporting ---------------------------------------------------------------
    def info(self) -> str:
        """print_page_map_info, as a string."""
        lines = [f"Page Map {self.name}", f"\tNum pages: {self.num_pages}"]
        with self.lock:
            for v in self.vmrs:
                lines.append(
                    f"\tVMR proc {v.proc.pid}: ({v.base:#x} - {v.end:#x}): "
                    f"prot {v.prot:#x}, flags {v.flags:#x}, foff {v.foff:#x}"
                )
        return "\n".join(lines)

    def check_quiescent(self) -> list[str]:
        """What is wrong with the map when no task is running (the accounting
        oracle): every complaint as a sentence; an empty list if all is well."""
        problems: list[str] = []
        count = 0
        for i, tree_slot in self.tree.items():
            count += 1
            word = decode_slot(tree_slot.value)
            if word.refcnt:
                problems.append(f"{self.name}: slot {i} still has {word.refcnt} reference(s)")
            if word.removal:
                problems.append(f"{self.name}: slot {i} still has REMOVAL set")
            if not word.ppn:
                problems.append(f"{self.name}: slot {i} has no page")
                continue
            page = self.allocator.pages[word.ppn]
            flags = page.flags.value
            if not flags & PG_PAGEMAP:
                problems.append(f"{self.name}: page {i} (frame {page.ppn}) lacks PG_PAGEMAP")
            if flags & (PG_LOCKED | PG_REMOVAL):
                problems.append(f"{self.name}: page {i} (frame {page.ppn}) left LOCKED or REMOVAL")
            if page.index != i or page.tree_slot is not tree_slot or page.mapping is not self:
                problems.append(f"{self.name}: page at slot {i} does not point back at it")
            if self.allocator.is_free(page.ppn):
                problems.append(f"{self.name}: page {i} sits in free frame {page.ppn}")
        if count != self.num_pages:
            problems.append(f"{self.name}: nr_pages is {self.num_pages} but the tree holds {count}")
        if self.lock.held:
            problems.append(f"{self.name}: the map lock is still held")
        if self.removal.value:
            problems.append(f"{self.name}: the removal flag is still set")
        return problems


__all__ = [
    "PM_FLAGS_SHIFT",
    "PM_REFCNT_MAX",
    "PM_REFCNT_SHIFT",
    "PM_REMOVAL",
    "KernelError",
    "PageMap",
    "PageMapOps",
    "SlotWord",
    "decode_slot",
    "encode_slot",
]
