"""Mutants of the TLB flushes of issue 21: ranged flushes, batched flushes in
reclaim, and mremap's flush of the range it moved.  Each breaks one rule and
names the scenario (check/scenarios/tlb.py) that must catch it."""

from __future__ import annotations

from pagemap.check.mutants.base import Mutant
from pagemap.hw.memory import PGSIZE
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


TLB_MUTANTS = (
    Mutant(
        "flush-range-short",
        "mprotect and munmap flush a range one page short of the PTEs they changed",
        "tlb-range",
        {"_settle_dirty": _settle_one_page_short},
        budget=200,
        target=Proc,
    ),
)

__all__ = ["TLB_MUTANTS"]
