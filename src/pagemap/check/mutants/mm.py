"""Mutants of the mapping calls, the fault handler, and a process's own memory
(kernel/mm.py, kernel/proc.py, kernel/hostfs.py; the scenarios of
check/scenarios/mappings.py and process.py): D bits settled by munmap,
mprotect and msync, a fault's PTE and its region, anonymous and private
pages, and truncate's and fsync's view of the mappings.

Rules: as every family (check/mutants/base.py); the order of MM_MUTANTS and
PROCESS_MUTANTS is part of the one table's (check/mutants/__init__.py).
"""

from __future__ import annotations

from pagemap.check.mutants.base import Mutant
from pagemap.hw.memory import PGSHIFT, PGSIZE
from pagemap.hw.mmu import PTE_P, make_pte, pte_ppn
from pagemap.kernel.hostfs import HostInode
from pagemap.kernel.page import (
    Page,
)
from pagemap.kernel.pagemap import PageMap
from pagemap.kernel.proc import Proc
from pagemap.kernel.vmr import VMR, among, split_outside, vmr_base
from pagemap.kernel.vmr import register as vmr_register
from pagemap.kernel.vmr import unregister as vmr_unregister
from pagemap.sync.core import READ

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
