"""Deliberately broken kernels: the one mutant table of the project.

Each mutant replaces a method or two of the kernel (for the length of a
`with mutant.applied()` block) by a variant with one rule of the protocol
broken, names the rule, the scenario that must catch it, and the budget
within which DPOR must do so (a deterministic search, so the budget is a
promise, not a probability).  The real kernel is never edited.

`pagemap check --mutants` runs the scenarios against every mutant and
reports which one killed it, so a user who writes scenarios learns how
strong they are; tests/check/test_mutants.py and bench/bench_check.py use the
same table.  EQUIVALENT_MUTANTS are mutations the design leaves no window
for, each with the reason; the search covers its scenario and finds nothing.
"""

from __future__ import annotations

import contextlib
from typing import Any
from unittest import mock

import pagemap.kernel.mmap as mmap_module
import pagemap.kernel.pagemap as pagemap_module
from pagemap.check.mutants.base import Mutant as Mutant
from pagemap.check.mutants.cow import COW_MUTANTS
from pagemap.check.mutants.errseq import ERRSEQ_MUTANTS
from pagemap.check.mutants.punch import PUNCH_MUTANTS
from pagemap.check.mutants.rooms2 import ROOM2_MUTANTS
from pagemap.check.mutants.tlb import TLB_MUTANTS
from pagemap.check.mutants.wp import WP_MUTANTS
from pagemap.hw.memory import PGSHIFT, PGSIZE
from pagemap.hw.mmu import PTE_A, PTE_D, PTE_P, PageFault, make_pte, pte_ppn
from pagemap.kernel.blockdev import BH_DIRTY, BlockDevice, BufferHead
from pagemap.kernel.errors import AlreadyExists, IOFailure, KernelBug
from pagemap.kernel.flusher import Flusher
from pagemap.kernel.fs.ext2 import Ext2FS
from pagemap.kernel.fs.ext2 import dir as dirops
from pagemap.kernel.fs.ext2.balloc import Allocator, find_zero, set_bit
from pagemap.kernel.fs.ext2.bmap import BlockMap
from pagemap.kernel.fs.ext2.dir import _add_block as dir_add_block
from pagemap.kernel.fs.ext2.dir import _blocks as dir_blocks
from pagemap.kernel.fs.ext2.dir import _changed as dir_changed
from pagemap.kernel.fs.ext2.errors import Corrupt
from pagemap.kernel.fs.ext2.inode import Ext2Inode
from pagemap.kernel.fs.ext2.layout import (
    NDIR_BLOCKS,
    pack_dirent,
    rec_len_for,
    set_rec_len,
)
from pagemap.kernel.fs.ext2.super import Group
from pagemap.kernel.hostfs import HostInode
from pagemap.kernel.hostio import HostIO
from pagemap.kernel.mman import MAP_LOCKED
from pagemap.kernel.page import (
    PG_DIRTY,
    PG_FAULTED,
    PG_LOCKED,
    PG_PAGEMAP,
    PG_REMOVAL,
    PG_UPTODATE,
    Page,
    lock_page,
    unlock_page,
)
from pagemap.kernel.pagemap import PageMap
from pagemap.kernel.policy import Key, Policy
from pagemap.kernel.proc import Proc
from pagemap.kernel.radix import RADIX_MASK, RADIX_SHIFT, RadixTree, _Node
from pagemap.kernel.reclaim import Reclaim
from pagemap.kernel.rmap import vmr_has_page_idx, vmr_idx_to_va, vmr_overlap
from pagemap.kernel.slot import (
    PM_PPN_MASK,
    PM_REFCNT_ONE,
    PM_REMOVAL,
    slot_check_refcnt,
    slot_set_ppn,
    slot_set_removal,
)
from pagemap.kernel.vfs import Inode, pages_spanned
from pagemap.kernel.vmr import VMR, among, split_outside, vmr_base
from pagemap.kernel.vmr import register as vmr_register
from pagemap.kernel.vmr import unregister as vmr_unregister
from pagemap.kernel.writeback import Writeback
from pagemap.sync.core import READ, WRITE

# -- page-map mutants -------------------------------------------------------------


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

# -- mapping mutants ----------------------------------------------------------------


def _unmap_marked(self: PageMap, lo: int, hi: int, early_dirty: bool, shootdown: bool) -> None:
    """Passes 2 and 3 of removal, with the D bits read before the shootdown,
    or with no shootdown at all."""
    live = [
        (v, r)
        for v in self.vmrs
        if not v.flags & MAP_LOCKED
        if (r := vmr_overlap(v, lo, hi)) is not None
    ]
    procs = []
    for vmr, (a, b) in live:
        proc = vmr.proc
        with proc.pte_lock:
            for pte in proc.ptes(vmr_idx_to_va(vmr, a), vmr_idx_to_va(vmr, b - 1) + 1):
                self._pte_mark_not_present(pte)
                if early_dirty:
                    self._pte_unmap_keep_dirty(pte)  # BUG: a cached D can still store
        procs.append(proc)
    if shootdown:
        for proc in procs:
            proc.tlb_shootdown()
    for vmr, (a, b) in live:
        proc = vmr.proc
        with proc.pte_lock:
            for pte in proc.ptes(vmr_idx_to_va(vmr, a), vmr_idx_to_va(vmr, b - 1) + 1):
                self._pte_unmap_keep_dirty(pte)


def _dirty_before_shootdown(
    self: PageMap,
    lo: int,
    hi: int,
    include_pinned: bool = False,
    indices: list[int] | None = None,
    ranged: bool = False,
) -> None:
    _unmap_marked(self, lo, hi, early_dirty=True, shootdown=False)


_real_free_marked = PageMap._free_marked


def _shootdown_then_free(self: PageMap, lo: int, hi: int, indices: list[int] | None = None) -> int:
    # BUG (with the above): D bits were trusted, and pages written back, while
    # TLBs could still store into them; the shootdown comes only now.
    for vmr in self.vmrs:
        vmr.proc.tlb_shootdown()
    return int(_real_free_marked(self, lo, hi, indices))


def _no_shootdown(
    self: PageMap,
    lo: int,
    hi: int,
    include_pinned: bool = False,
    indices: list[int] | None = None,
    ranged: bool = False,
) -> None:
    _unmap_marked(self, lo, hi, early_dirty=False, shootdown=False)


_real_mark_for_removal = PageMap._mark_for_removal


def _pins_ignored(
    self: PageMap,
    lo: int,
    hi: int,
    respect_pins: bool = True,
    indices: list[int] | None = None,
) -> None:
    # BUG: marks pinned pages
    _real_mark_for_removal(self, lo, hi, respect_pins=False, indices=indices)


def _zap_drops_dirty(self: Proc, lo: int, hi: int, free_owned: bool) -> list[Page]:
    vpn_lo, vpn_hi = lo >> PGSHIFT, hi >> PGSHIFT
    with self.pte_lock:
        for _vpn, word in self.page_table.ptes(vpn_lo, vpn_hi):
            word.swap(0)  # BUG: the D bit goes with the PTE
        owned = self._owned_vpns(vpn_lo, vpn_hi) if free_owned else []
        self.tlb_shootdown()
    return [self.anon.pop(v) for v in owned]


def _keeps_nothing(old: int) -> int:
    # BUG: a fault re-installing a page that removal made not present forgets
    # the D bit still in the PTE.
    return old & PTE_D if old & PTE_P else 0


MAPPING_MUTANTS = (
    Mutant(
        "dirty-before-shootdown",
        "removal reads PTE dirty bits, and writes back, before the TLB shootdown",
        "store-remove",
        {"_unmap_marked": _dirty_before_shootdown, "_free_marked": _shootdown_then_free},
        budget=400,
    ),
    Mutant(
        "no-shootdown",
        "removal never shoots down TLBs",
        "store-remove",
        {"_unmap_marked": _no_shootdown},
        budget=10,
    ),
    Mutant(
        "pins-ignored",
        "removal marks pages of MAP_LOCKED regions",
        "locked-remove",
        {"_mark_for_removal": _pins_ignored},
        budget=10,
    ),
    Mutant(
        "munmap-drops-dirty",
        "munmap clears PTEs without passing their D bits to the pages",
        "munmap-remove",
        {"_zap": _zap_drops_dirty},
        budget=10,
        target=Proc,
        dirty_tracking="dbit",  # a D bit is what it loses
    ),
)

# -- the mapping calls and the fault handler ---------------------------------------


def _settle_forgets_dirty(
    self: Proc, dirty: list[Page], lo: int | None = None, hi: int | None = None
) -> None:
    self.tlb_shootdown(lo, hi)  # BUG: the D bits cleared from the PTEs go nowhere


def _proc_no_shootdown(self: Proc, lo: int | None = None, hi: int | None = None) -> None:
    """BUG: a process's TLB entries are never flushed."""


def _set_pte_overwriting(self: Proc, va: int, page: Page, bits: int, write: bool) -> bool:
    # BUG: rewrites the PTE even when another core's fault installed it since,
    # losing the D bit that core's store set meanwhile.
    old = self.page_table.pte(va >> PGSHIFT).swap(make_pte(page.ppn, bits))
    return bool(old & PTE_P) and pte_ppn(old) != page.ppn


def _region_always_survives(self: Proc, vmr: VMR, va: int) -> bool:
    return True  # BUG: no check that the region is still there after the fault slept


def _unmap_leaving_the_map_first(self: Proc, lo: int, hi: int) -> None:
    victims = [v for v in self.vmrs if v.base < hi and v.end > lo]
    if not victims:
        return
    keep = [p for v in victims for p in split_outside(v, lo, hi)]
    for piece in keep:
        vmr_register(piece)
    self.vmrs = sorted([v for v in self.vmrs if not among(v, victims)] + keep, key=vmr_base)
    for v in victims:
        vmr_unregister(v)  # BUG: before the PTEs are zeroed, removal cannot see them
    for page in self._zap(lo, hi, free_owned=True):
        self.allocator.decref(page)


MM_MUTANTS = (
    Mutant(
        "settle-drops-dirty",
        "munmap, mprotect and msync clear D bits without passing them to the pages",
        "mprotect-remove",
        {"_settle_dirty": _settle_forgets_dirty},
        budget=10,
        target=Proc,
        dirty_tracking="dbit",  # a D bit is what it loses
    ),
    Mutant(
        "proc-no-shootdown",
        "a process's TLB entries are never flushed",
        "fault-remove",
        {"tlb_shootdown": _proc_no_shootdown},
        budget=10,
        target=Proc,
    ),
    Mutant(
        "fault-overwrites-pte",
        "a fault rewrites a PTE another core's fault installed, losing its D bit",
        "fault-fault",
        {"_set_pte": _set_pte_overwriting},
        budget=100,
        target=Proc,
        dirty_tracking="dbit",  # a D bit is what it loses
    ),
    Mutant(
        "fault-after-munmap",
        "a fault installs its PTE without checking its region survived its sleep",
        "munmap-fault",
        {"_region_survived": _region_always_survives},
        budget=50,
        target=Proc,
    ),
    Mutant(
        "munmap-leaves-early",
        "munmap takes its regions off the page map before it zeroes their PTEs",
        "munmap-remove",
        {"_unmap_locked": _unmap_leaving_the_map_first},
        budget=200,
        target=Proc,
    ),
)

# -- a process's own memory (check/scenarios/process.py) ----------------------------


def _anonymous_loser_kept(self: Proc, vmr: VMR, va: int, owned: Page | None) -> None:
    if owned is not None:
        self._install(vmr, va, owned, True, owned=True)
        return
    page = self._zeroed_page()
    self._install(vmr, va, page, True, owned=True)  # BUG: the losing page is never freed


def _claim_over_a_copy(self: Proc, vpn: int, page: Page, owned: bool) -> bool:
    # BUG: no check for a copy another fault made since we looked: ours, copied
    # from the file, covers it and the stores made into it.
    if owned:
        self.anon[vpn] = page
    return True


def _writepage_unlocked(self: HostInode, pm: PageMap, page: Page) -> None:
    # BUG: the size is read and the bytes written without the host lock, so a
    # truncate (size, then ftruncate) can fall between them: the write lands
    # past the new end and the host file grows back.
    nbytes = self._bytes_in_page(page)
    if nbytes:
        self.executor.point("frame_read", page.ppn, READ)
        self.io.pwrite(page.data[:nbytes], page.index * PGSIZE)


def _copies_kept(self: Proc, va_lo: int, va_hi: int) -> None:
    """BUG: truncate leaves private copies past the new end mapped."""


def _disown_then_flush(self: Proc, vpns: list[int]) -> list[Page]:
    # BUG: the private copies are freed before the shootdown, while a store
    # translated on another core may still land in them.
    for vpn in vpns:
        self.allocator.decref(self.anon.pop(vpn))
    if vpns:
        self.tlb_shootdown()
    return []


def _mappings_not_collected(self: PageMap, index: int, nr_pages: int) -> None:
    """BUG: fsync writes back without the D bits of shared mappings."""


PROCESS_MUTANTS = (
    Mutant(
        "writepage-unlocked",
        "a host file's writepage reads the size and writes without the host lock",
        "truncate-store",
        {"writepage": _writepage_unlocked},
        budget=200,
        target=HostInode,
    ),
    Mutant(
        "anon-loser-leaks",
        "the zeroed page of a fault that lost the race to install is never freed",
        "anon-fault-remap",
        {"_fault_anonymous": _anonymous_loser_kept},
        budget=50,
        target=Proc,
    ),
    Mutant(
        "private-second-copy",
        "a fault installs its private copy over one another core's fault made meanwhile",
        "private-fault-fault",
        {"_claim_slot": _claim_over_a_copy},
        budget=100,
        target=Proc,
    ),
    Mutant(
        "truncate-keeps-copies",
        "truncate leaves private copies of pages past the new end mapped",
        "truncate-private",
        {"drop_private_copies": _copies_kept},
        budget=20,
        target=Proc,
    ),
    Mutant(
        "truncate-frees-before-flush",
        "truncate frees the private copies it unmapped before the TLB shootdown",
        "truncate-private",
        {"_flush_then_disown": _disown_then_flush},
        budget=200,
        target=Proc,
    ),
    Mutant(
        "fsync-skips-mappings",
        "fsync writes pages back without collecting the D bits of shared mappings",
        "fsync-store",
        {"collect_mapped_dirty": _mappings_not_collected},
        budget=20,
        dirty_tracking="dbit",  # a D bit is what it loses
    ),
)

# -- ext2 ----------------------------------------------------------------------------


def _truncate_frees_first(self: BlockMap, keep: int) -> int:
    # BUG: the bitmap gets the blocks back while the map still names them, and
    # only then does the map let go (direct blocks: the scenario's files need
    # no others).
    doomed = [b for b in self.i_block[min(keep, NDIR_BLOCKS) : NDIR_BLOCKS] if b]
    if doomed:
        self.alloc.free_blocks(doomed, f"{self.name}: truncate")
    with self.lock:
        for k in range(min(keep, NDIR_BLOCKS), NDIR_BLOCKS):
            self.i_block[k] = 0
        self.blocks512 -= len(doomed) * self.geo.sectors_per_block
    return len(doomed)


_REAL_TRUNCATE = BlockMap.truncate


def _truncate_frees_indirect_first(self: BlockMap, keep: int) -> int:
    # BUG: the blocks past `keep`, the indirect block among them, go back to
    # the bitmap while the map still names them; only then is the map cut
    # (by the real truncate, whose own frees are skipped: they were done).
    named = self.blocks512 // self.geo.sectors_per_block  # blocks of a file with no holes
    doomed = [b for n in range(keep, named) if (b := self.lookup(n))]
    if keep <= NDIR_BLOCKS and self.i_block[NDIR_BLOCKS]:
        doomed.append(self.i_block[NDIR_BLOCKS])
    if doomed:
        self.alloc.free_blocks(doomed, f"{self.name}: truncate")
    with mock.patch.object(self.alloc, "free_blocks", lambda blocks, where: None):
        return _REAL_TRUNCATE(self, keep)


def _never_in_use(inode: Ext2Inode) -> bool:
    # BUG: no check that the inode is still open or mapped: an unlinked file's
    # blocks go back to the bitmap while its dirty pages are yet to be written.
    return False


EXT2_MUTANTS = (
    Mutant(
        "ext2-frees-first",
        "truncate frees blocks in the bitmap before the inode's map lets go of them",
        "ext2-append-truncate",
        {"truncate": _truncate_frees_first},
        budget=100,
        target=BlockMap,
    ),
    Mutant(
        "ext2-frees-indirect-first",
        "truncate frees an indirect block and what it names before the map lets go of them",
        "ext2-indirect-truncate",
        {"truncate": _truncate_frees_indirect_first},
        budget=800,
        target=BlockMap,
    ),
    Mutant(
        "ext2-frees-open-file",
        "unlink frees an inode's blocks while the file is still open with dirty pages",
        "ext2-unlink-reuse",
        {"_in_use": staticmethod(_never_in_use)},
        budget=20,
        target=Ext2FS,
    ),
)


# -- the rooms under the page map: frames, the tree, user access, files --------------
# Each breaks one rule of a room of kernel/ the tables above leave alone.  A
# seam that is a module's function (unlock_page, merge_around) is patched where
# its caller looks it up, so the target is that module.


def _unlock_page_no_wakeup(page: Page) -> None:
    # BUG: the lock bit is cleared but the page lock is never given back, so a
    # task asleep on it (or the next to lock the page) is never woken.
    page.flags.fetch_and(~PG_LOCKED)


def _insert_over_an_entry(self: RadixTree, index: int, ppn: int) -> None:
    # BUG: no check that the index is taken: a second inserter's frame replaces
    # the first one's, which is lost with its slot reference and its reader.
    self._check_index(index)
    self._grow_to(index)
    assert self.root is not None
    node = self.root
    shift = RADIX_SHIFT * (self.height - 1)
    while shift:
        i = (index >> shift) & RADIX_MASK
        child = node.items[i]
        if child is None:
            child = node.items[i] = _Node(leaf=shift == RADIX_SHIFT)
            node.count += 1
            self.nr_nodes += 1
        node = child
        shift -= RADIX_SHIFT
    if not node.items[index & RADIX_MASK]:
        node.count += 1
        self.nr_items += 1
    node.items[index & RADIX_MASK] = ppn


def _merge_unregistering_first(vmrs: list[VMR], lo: int, hi: int) -> None:
    i = 0
    while i + 1 < len(vmrs):
        a, b = vmrs[i], vmrs[i + 1]
        if a.end >= lo and b.base <= hi and a.mergeable(b):
            joined = a.slice(a.base, b.end)
            # BUG: the two regions leave the page map before their join is on
            # it: a removal in between unmaps nothing there.
            vmr_unregister(a)
            vmr_unregister(b)
            vmr_register(joined)
            vmrs[i : i + 2] = [joined]
            continue
        i += 1


def _store_dropped_after_fault(self: Proc, core: int, va: int, data: bytes) -> None:
    self._check_user_address(va, True)
    try:
        self.mmu.store(core, self.page_table, va, data)
    except PageFault as fault:
        # BUG: the fault is handled, and the store that took it is taken as
        # done: it is never retried, so its bytes are lost.
        self.handle_page_fault(fault.va, fault.write)


_REAL_PWRITE = HostIO.pwrite


def _pwrite_swallows_eio(self: HostIO, data: bytes | bytearray | memoryview, offset: int) -> None:
    # BUG: the failed write is reported as done, so its page is taken as clean.
    with contextlib.suppress(IOFailure):
        _REAL_PWRITE(self, data, offset)


def _dirty_page_then_buffer(self: BlockDevice, bh: BufferHead) -> None:
    self._check_mine(bh, "dirty_buffer")
    self._check_open("dirty_buffer")
    # BUG: the page before the buffer: a writeback in between takes the page's
    # dirty bit, finds no dirty buffer, and the page is left clean.
    bh.page.flags.fetch_or(PG_DIRTY)
    bh.flags.fetch_or(BH_DIRTY)


def _truncate_size_last(self: Inode, size: int) -> None:
    self.lock.down()
    try:
        old_size = self.size_word.load()
        if size < old_size:
            # BUG: the pages go before the size shrinks: a read or a
            # writeback in between brings the old bytes back past the end.
            self.mapping.truncate_pages(pages_spanned(size))
            self.mapping.drop_private_copies(pages_spanned(size))
            self.set_size(size)
            self._zero_cached(size, pages_spanned(size) << PGSHIFT)
        elif size > old_size:
            self.set_size(size)
            self._zero_cached(old_size, size)
    finally:
        self.lock.up()


def _harvest_ptes_racy(
    self: Reclaim, pm: PageMap, ppns: list[int], used: set[int], shoot: list[Any]
) -> None:
    flags = self.allocator.frames.flags
    pages = self.allocator.pages
    with pm.lock:
        for ppn in ppns:
            page = pages[ppn]
            if page.mapping is not pm:
                continue
            index = page.index
            fresh = bool(flags.load(ppn) & PG_FAULTED)
            if fresh:
                flags.fetch_and(ppn, ~PG_FAULTED)
            for vmr in pm.vmrs:
                if not vmr_has_page_idx(vmr, index):
                    continue
                proc = vmr.proc
                pte = proc.pte_at(vmr_idx_to_va(vmr, index))
                if pte is None:
                    continue
                old = pte.load()
                if old & (PTE_P | PTE_A) != PTE_P | PTE_A or pte_ppn(old) != ppn:
                    continue
                # BUG: the PTE read before the pte_lock, and written back whole
                # under it: a D bit a store set in between is lost.
                with proc.pte_lock:
                    pte.store(old & ~PTE_A)
                if not fresh:
                    used.add(ppn)
                if not any(p is proc for p in shoot):
                    shoot.append(proc)


def _low_on_memory_no_kick(self: Flusher, free: int) -> None:
    # BUG: an allocation that crosses the low watermark never wakes kswapd.
    if free == self.low - 1 and not self.stop_requested():
        self.stats.kicks += 1


def _reclaim_round_keeps_mutex(self: Flusher) -> int:
    if self.allocator.free_frames() >= self.low:
        return 0
    reclaim = self.reclaim
    reclaim.mutex.down()
    # BUG: the reclaim mutex is never given back: the next reclaim, kswapd's
    # or an allocation's, sleeps on it forever.
    freed = reclaim.shrink(self.high - self.allocator.free_frames())
    self.stats.rounds += 1
    self.stats.pages_freed += freed
    return freed


def _kept_forgotten(self: Policy, key: Key) -> None:
    # BUG: a victim the kernel could not free leaves the in-flight set but is
    # never put back: the policy loses a page that is still cached.
    self._pending.pop(key, -1)


ROOM_MUTANTS = (
    Mutant(
        "unlock-page-no-wakeup",
        "unlock_page clears PG_LOCKED but never wakes the page lock's sleepers",
        "load-race",
        {"unlock_page": _unlock_page_no_wakeup},
        budget=150,
        target=pagemap_module,
    ),
    Mutant(
        "radix-insert-overwrites",
        "a radix insert at a taken index replaces the entry instead of refusing",
        "load-race",
        {"insert": _insert_over_an_entry},
        budget=500,
        target=RadixTree,
    ),
    Mutant(
        "merge-unregisters-first",
        "a merge takes the two regions off the page map before their join is on it",
        "merge-fault-remove",
        {"merge_around": _merge_unregistering_first},
        budget=800,
        target=mmap_module,
    ),
    Mutant(
        "store-lost-after-fault",
        "a user store that faulted is taken as done once the fault is handled",
        "anon-fault-remap",
        {"_store_in_page": _store_dropped_after_fault},
        budget=10,
        target=Proc,
    ),
    Mutant(
        "host-write-eio-swallowed",
        "a host write that fails with EIO is reported as done",
        "eio-fsync",
        {"pwrite": _pwrite_swallows_eio},
        budget=10,
        target=HostIO,
    ),
    Mutant(
        "buffer-dirty-page-first",
        "dirty_buffer marks the page dirty before the buffer",
        "blockdev-remove",
        {"dirty_buffer": _dirty_page_then_buffer},
        budget=100,
        target=BlockDevice,
    ),
    Mutant(
        "truncate-size-last",
        "truncate drops the pages past the end before it shrinks the size",
        "truncate-store",
        {"truncate": _truncate_size_last},
        budget=100,
        target=Inode,
    ),
    Mutant(
        "harvest-loses-dirty",
        "reclaim clears a PTE's A bit by a load and a store, losing a D bit set between",
        "reclaim-store",
        {"_harvest_ptes": _harvest_ptes_racy},
        budget=50,
        target=Reclaim,
        dirty_tracking="dbit",  # a D bit is what it loses
    ),
    Mutant(
        "kswapd-keeps-mutex",
        "kswapd never gives the reclaim mutex back",
        "flusher-writers",
        {"reclaim_round": _reclaim_round_keeps_mutex},
        budget=600,
        target=Flusher,
    ),
    Mutant(
        "kept-victim-lost",
        "the policy forgets a victim the kernel could not free",
        "reclaim-store",
        {"kept": _kept_forgotten},
        budget=400,
        target=Policy,
    ),
)


def _alloc_found_before_the_lock(self: Allocator, group: Group, start: int) -> int:
    if not group.desc.free_blocks_count:
        return 0
    geo = self.geo
    nbits = geo.group_end(group.index) - geo.group_start(group.index)
    bh = self._bitmap(group.desc.block_bitmap)
    try:
        # BUG: the free bit is looked for before the group's lock, not under
        # it: two allocators can find the same bit and both take its block.
        bit = find_zero(bh.data, start, nbits)
        if bit < 0:
            bit = find_zero(bh.data, 0, min(start, nbits))
        if bit < 0:
            return 0
        with group.lock:
            set_bit(bh.data, bit)
            group.desc.free_blocks_count -= 1
            self.dev.dirty_buffer(bh)
            return geo.group_start(group.index) + bit
    finally:
        self.dev.put_buffer(bh)


EXT2_ROOM_MUTANTS = (
    Mutant(
        "ext2-alloc-looks-unlocked",
        "a block allocator looks for a free bit before taking its group's lock",
        "ext2-append-truncate",
        {"_alloc_in_group": _alloc_found_before_the_lock},
        budget=100,
        target=Allocator,
    ),
)


def _dir_add_puts_first(d: Ext2Inode, name: bytes, ino: int, file_type: int) -> None:
    vol = d.vol
    geo = vol.geo
    need = rec_len_for(len(name))
    ftype = file_type if geo.filetype else 0
    for _, phys, entries in dir_blocks(d):
        for e in entries:
            used = rec_len_for(e.name_len) if e.inode else 0
            if e.rec_len - used < need:
                continue
            bh = vol.dev.get_buffer(phys, geo.block_size)
            # BUG: the buffer goes back before the block is changed and marked
            # dirty: the device's removal can write and free its page between.
            vol.dev.put_buffer(bh)
            if e.inode:
                set_rec_len(bh.data, e.offset, used)
            pack_dirent(bh.data, e.offset + used, ino, e.rec_len - used, name, ftype)
            vol.dev.dirty_buffer(bh)
            dir_changed(d)
            return
    dir_add_block(d, name, ino, ftype)


EXT2_NAMESPACE_MUTANTS = (
    Mutant(
        "dir-add-puts-first",
        "a directory add gives its block's buffer back before it changes the block",
        "ext2-namespace-writeback",
        {"add": _dir_add_puts_first},
        budget=500,
        target=dirops,
    ),
)


def _shrink_pages_first(self: Ext2Inode, size: int) -> None:
    last = self.mapping.load_page(size >> PGSHIFT) if size % PGSIZE else None
    if last is not None:
        lock_page(last)
    try:
        # BUG: the pages past the end are dropped before the size is cut, not
        # after: a fault between the two reads the old size and maps a page
        # past the new end, which nothing unmaps again.
        self.mapping.truncate_pages(pages_spanned(size))
        self.mapping.drop_private_copies(pages_spanned(size))
        self.size_word.store(size)
        if last is not None:
            self.executor.point("frame_write", last.ppn, WRITE)
            last.data[size % PGSIZE :] = bytes(PGSIZE - size % PGSIZE)
            if size % self.vol.geo.block_size:
                last.flags.fetch_or(PG_DIRTY)
            self._forget_past(last, size)
        try:
            self._free_blocks_past(size)
        except Corrupt:
            raise
        except OSError:
            self.trim_pending = True
    finally:
        if last is not None:
            unlock_page(last)
            self.mapping.put_page(last)


EXT2_TRUNCATE_MUTANTS = (
    Mutant(
        "ext2-shrink-size-last",
        "an ext2 truncate drops the pages past the new end before it cuts the size",
        "ext2-truncate-read",
        {"_shrink": _shrink_pages_first},
        budget=100,
        target=Ext2Inode,
    ),
)


# Mutants no scenario can tell from the real kernel, and why.  A fault that
# re-installs a page drops a D bit only if it finds the PTE not present with
# D still set: between removal's pass 2 (clear P) and pass 3 (collect D).
# Removal holds the page map's lock across both passes, and a fault takes
# that lock (in load_page) before it installs, so by then pass 3 has zeroed
# the PTE and moved D to PG_DIRTY: the bit the mutant drops is never there.
# kswapd-kick-lost: kswapd sleeps with a timeout of one period and reclaims
# whenever it wakes, and an allocation that finds no frame reclaims in its own
# task; a lost kick delays background reclaim by a period at most, and
# nothing an oracle sees depends on when it runs.
EQUIVALENT_MUTANTS = (
    Mutant(
        "kswapd-kick-lost",
        "an allocation crossing the low watermark never wakes kswapd",
        "flusher-pwrite",
        {"low_on_memory": _low_on_memory_no_kick},
        budget=5000,
        target=Flusher,
    ),
    Mutant(
        "fault-drops-dirty",
        "a fault that re-installs a page removal unmapped drops the D bit still in the PTE",
        "store-remove",
        {"_kept_bits": staticmethod(_keeps_nothing)},
        budget=5000,
        target=Proc,
    ),
)

MUTANTS = (
    PAGEMAP_MUTANTS
    + MAPPING_MUTANTS
    + MM_MUTANTS
    + PROCESS_MUTANTS
    + EXT2_MUTANTS
    + ROOM_MUTANTS
    + EXT2_ROOM_MUTANTS
    + EXT2_NAMESPACE_MUTANTS
    + EXT2_TRUNCATE_MUTANTS
    + TLB_MUTANTS
    + COW_MUTANTS
    + ERRSEQ_MUTANTS
    + PUNCH_MUTANTS
    + WP_MUTANTS
    + ROOM2_MUTANTS
)


def lookup_mutant(name: str) -> Mutant:
    for m in MUTANTS + EQUIVALENT_MUTANTS:
        if m.name == name:
            return m
    known = ", ".join(m.name for m in MUTANTS)
    raise ValueError(f"unknown mutant {name!r} (known: {known})")
