"""Mutants of the rooms under the page map (kernel/): frames and the page lock,
the radix tree, regions and their merge, user stores, host and block I/O,
truncate, reclaim's harvest of A bits, kswapd, and the replacement policy.

Rules: as every family (check/mutants/base.py).  Each breaks one rule of a
room of kernel/ the other tables leave alone.  A seam that is a module's
function (unlock_page, merge_around) is patched where its caller looks it up,
so the target is that module.  The order of ROOM_MUTANTS is part of the one
table's (check/mutants/__init__.py).
"""

from __future__ import annotations

import contextlib
from typing import Any

import pagemap.kernel.mmap as mmap_module
import pagemap.kernel.pagemap as pagemap_module
from pagemap.check.mutants.base import Mutant
from pagemap.hw.memory import PGSHIFT
from pagemap.hw.mmu import PTE_A, PTE_P, PageFault, pte_ppn
from pagemap.kernel.blockdev import BH_DIRTY, BlockDevice, BufferHead
from pagemap.kernel.errors import IOFailure
from pagemap.kernel.flusher import Flusher
from pagemap.kernel.hostio import HostIO
from pagemap.kernel.page import (
    PG_DIRTY,
    PG_FAULTED,
    PG_LOCKED,
    Page,
)
from pagemap.kernel.pagemap import PageMap
from pagemap.kernel.policy import Key, Policy
from pagemap.kernel.proc import Proc
from pagemap.kernel.radix import RADIX_MASK, RADIX_SHIFT, RadixTree, _Node
from pagemap.kernel.reclaim import Reclaim
from pagemap.kernel.rmap import vmr_has_page_idx, vmr_idx_to_va
from pagemap.kernel.vfs import Inode, pages_spanned
from pagemap.kernel.vmr import VMR
from pagemap.kernel.vmr import register as vmr_register
from pagemap.kernel.vmr import unregister as vmr_unregister


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
