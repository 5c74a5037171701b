"""Mutants of removal's passes over the mappings of a page (kernel/removal.py,
kernel/pagemap.py): the TLB shootdown between clearing P and reading D, the
pins of MAP_LOCKED regions, and munmap's zap that hands D bits to the pages.

Rules: as every family (check/mutants/base.py); the order of MAPPING_MUTANTS
is part of the one table's (check/mutants/__init__.py).
"""

from __future__ import annotations

from pagemap.check.mutants.base import Mutant
from pagemap.hw.memory import PGSHIFT
from pagemap.kernel.mman import MAP_LOCKED
from pagemap.kernel.page import (
    Page,
)
from pagemap.kernel.pagemap import PageMap
from pagemap.kernel.proc import Proc
from pagemap.kernel.rmap import vmr_idx_to_va, vmr_overlap


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
