"""The scenarios of test_removal_mapped.py catch a broken kernel.

Each mutant is a copy of one Proc method with one rule of the mapping
protocol broken (the real code is never edited; the copy is patched in for
the length of the test).  Each must make its scenario report an oracle
violation within a budget of seeds, which shows the oracles can fail for the
reasons the module docstring of kernel/mm.py gives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from unittest import mock

import pytest

from pagemap import PROT_WRITE, Page
from pagemap.hw.mmu import PTE_D, PTE_P, PTE_U, PTE_W, make_pte, pte_ppn
from pagemap.kernel.proc import Proc
from pagemap.kernel.vmr import VMR
from tests.kernel.test_removal_mapped import SCENARIOS, World


def settle_dirty_forgetting_pg_dirty(self: Proc, dirty: list[Page]) -> None:
    """munmap, mprotect and msync drop the D bits they clear."""
    self.tlb_shootdown()


def no_shootdown(self: Proc) -> None:
    """TLBs are never flushed."""


def install_overwriting(
    self: Proc, vmr: VMR, va: int, page: Page, write: bool, owned: bool
) -> bool:
    """The fault handler rewrites the PTE even when another core's fault has
    installed the page since it looked, losing the D bit that core's store
    has set meanwhile."""
    vpn = va >> 12
    with self.vmr_lock:
        if self._find_vmr(va) is not vmr:
            return False
        writable = bool(vmr.prot & PROT_WRITE) and (vmr.shared or owned or vmr.file is None)
        with self.pte_lock:
            mine = self.anon.get(vpn)
            if mine is not None and mine is not page:
                return False
            if owned:
                self.anon[vpn] = page
            old = self.page_table.pte(vpn).swap(
                make_pte(page.ppn, PTE_P | PTE_U | (PTE_W if writable else 0))
            )
            if old & PTE_P and pte_ppn(old) != page.ppn:
                self.tlb_shootdown()
    return True


def install_without_recheck(
    self: Proc, vmr: VMR, va: int, page: Page, write: bool, owned: bool
) -> bool:
    """The fault handler installs its PTE without checking that its VMR is
    still there after it slept in load_page."""
    vpn = va >> 12
    with self.vmr_lock:
        writable = bool(vmr.prot & PROT_WRITE) and (vmr.shared or owned or vmr.file is None)
        with self.pte_lock:
            if owned:
                self.anon[vpn] = page
            word = self.page_table.pte(vpn)
            while True:
                old = word.load()
                new = make_pte(page.ppn, PTE_P | PTE_U | (PTE_W if writable else 0))
                if word.cas(old, new | (old & PTE_D)):
                    return True


def unmap_leaving_the_map_first(self: Proc, lo: int, hi: int) -> None:
    """munmap takes its VMRs off the page map before it zeroes their PTEs."""
    victims = [v for v in self.vmrs if v.base < hi and v.end > lo]
    if not victims:
        return
    keep = [p for v in victims for p in self._outside(v, lo, hi)]
    for piece in keep:
        self._register(piece)
    self.vmrs = sorted(
        [v for v in self.vmrs if not self._among(v, victims)] + keep, key=lambda v: v.base
    )
    for v in victims:
        self._unregister(v)
    for page in self._zap(lo, hi, free_owned=True):
        self.allocator.decref(page)


@dataclass(frozen=True)
class Mutant:
    method: str
    replacement: Callable[..., Any]
    scenario: str
    budget: int  # seeds within which the scenario must catch it


MUTANTS = {
    "munmap and mprotect drop D bits": Mutant(
        "_settle_dirty", settle_dirty_forgetting_pg_dirty, "munmap_mprotect_vs_removal", 20
    ),
    "no TLB shootdowns": Mutant("tlb_shootdown", no_shootdown, "stores_vs_removal", 20),
    "a fault overwrites a PTE another fault installed": Mutant(
        "_install", install_overwriting, "stores_vs_removal", 200
    ),
    "a fault installs into an unmapped VMR": Mutant(
        "_install", install_without_recheck, "munmap_mprotect_vs_removal", 400
    ),
    "munmap leaves the page map before zeroing PTEs": Mutant(
        "_unmap_locked", unmap_leaving_the_map_first, "munmap_vs_removal", 1000
    ),
}


@pytest.mark.parametrize("name", list(MUTANTS))
def test_the_scenario_catches_the_mutant(name: str) -> None:
    mutant = MUTANTS[name]
    with mock.patch.object(Proc, mutant.method, mutant.replacement):
        for seed in range(mutant.budget):
            world = World(seed, npages=5)
            SCENARIOS[mutant.scenario](world)
            try:
                problems = world.finish()
            except Exception as exc:
                problems = [repr(exc)]
            if problems:
                return
    pytest.fail(f"{mutant.scenario} did not catch '{name}' within {mutant.budget} seeds")
