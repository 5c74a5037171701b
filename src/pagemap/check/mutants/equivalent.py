"""Mutants no scenario can tell from the real kernel, each with the reason:
`pagemap check --mutants` runs them, and the search covers their scenario
and finds nothing (the table says "survives: equivalent").

Rules: as every family (check/mutants/base.py); they are not in MUTANTS, and
lookup_mutant finds them too (check/mutants/__init__.py).
"""

from __future__ import annotations

from pagemap.check.mutants.base import Mutant
from pagemap.hw.mmu import PTE_D, PTE_P
from pagemap.kernel.flusher import Flusher
from pagemap.kernel.proc import Proc


def _keeps_nothing(old: int) -> int:
    # BUG: a fault re-installing a page that removal made not present forgets
    # the D bit still in the PTE.
    return old & PTE_D if old & PTE_P else 0


def _low_on_memory_no_kick(self: Flusher, free: int) -> None:
    # BUG: an allocation that crosses the low watermark never wakes kswapd.
    if free == self.low - 1 and not self.stop_requested():
        self.stats.kicks += 1


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
