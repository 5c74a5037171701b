"""Mutants of the TLB flushes of issue 21: ranged flushes, batched flushes in
reclaim, and mremap's flush of the range it moved.  Each breaks one rule and
names the scenario (check/scenarios/tlb.py) that must catch it."""

from __future__ import annotations

from pagemap.check.mutants.base import Mutant
from pagemap.hw.memory import PGSHIFT, PGSIZE
from pagemap.hw.mmu import PTE_P
from pagemap.kernel.mm import MM
from pagemap.kernel.page import Page
from pagemap.kernel.proc import Proc

_REAL_SETTLE = MM._settle_dirty


def _settle_one_page_short(
    self: Proc, dirty: list[Page], lo: int | None = None, hi: int | None = None
) -> None:
    # BUG: the flush's end is one page short (an off-by-one in the range): the
    # last page of the range keeps its TLB entries on other cores.
    _REAL_SETTLE(self, dirty, lo, None if hi is None else hi - PGSIZE)


def _move_ptes_flush_after_unlock(self: Proc, lo: int, hi: int, new_lo: int) -> None:
    shift = (new_lo - lo) >> PGSHIFT
    vpn_lo, vpn_hi = lo >> PGSHIFT, hi >> PGSHIFT
    present = False
    with self.pte_lock:
        table = self.page_table
        for vpn, word in table.ptes(vpn_lo, vpn_hi):
            old = word.swap(0)
            if old:
                present = present or bool(old & PTE_P)
                table.pte(vpn + shift).cas(0, old)
        for vpn in self._owned_vpns(vpn_lo, vpn_hi):
            page = self.anon.pop(vpn)
            self.anon[vpn + shift] = page
            self._owner_changed(page)
    # BUG: the lock is dropped before the old range is flushed: a writeback
    # or a truncate that finds the page at its new address meets another
    # core's entry for the old one.
    if present:
        self.tlb_shootdown(lo, hi)


def _pending_not_flushed(self: Proc) -> None:
    """BUG: what reclaim left pending is never flushed by the next path that
    changes the PTEs: a PTE reclaim cleared looks unchanged to mprotect."""


TLB_MUTANTS = (
    Mutant(
        "flush-range-short",
        "mprotect and munmap flush a range one page short of the PTEs they changed",
        "tlb-range",
        {"_settle_dirty": _settle_one_page_short},
        budget=200,
        target=Proc,
    ),
    Mutant(
        "batched-pending-not-flushed",
        "mprotect, munmap and mremap leave the flush reclaim deferred pending",
        "reclaim-batch",
        {"flush_tlb_batched_pending": _pending_not_flushed},
        budget=1000,
        target=Proc,
    ),
    Mutant(
        "mremap-flush-after-unlock",
        "mremap drops the page-table lock before it flushes the range it moved",
        "mremap-race",
        {"_move_ptes": _move_ptes_flush_after_unlock},
        budget=1000,
        target=Proc,
    ),
)

__all__ = ["TLB_MUTANTS"]
