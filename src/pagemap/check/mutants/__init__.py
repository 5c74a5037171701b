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

from pagemap.check.mutants.base import Mutant as Mutant
from pagemap.check.mutants.cow import COW_MUTANTS
from pagemap.check.mutants.equivalent import EQUIVALENT_MUTANTS as EQUIVALENT_MUTANTS
from pagemap.check.mutants.errseq import ERRSEQ_MUTANTS
from pagemap.check.mutants.ext2 import (
    EXT2_MUTANTS,
    EXT2_NAMESPACE_MUTANTS,
    EXT2_ROOM_MUTANTS,
    EXT2_TRUNCATE_MUTANTS,
)
from pagemap.check.mutants.ext2_rooms import EXT2_NAMEI_MUTANTS
from pagemap.check.mutants.mm import MM_MUTANTS, PROCESS_MUTANTS
from pagemap.check.mutants.pagemap import PAGEMAP_MUTANTS
from pagemap.check.mutants.punch import PUNCH_MUTANTS
from pagemap.check.mutants.removal import MAPPING_MUTANTS
from pagemap.check.mutants.rooms import ROOM_MUTANTS
from pagemap.check.mutants.rooms2 import ROOM2_MUTANTS
from pagemap.check.mutants.tlb import TLB_MUTANTS
from pagemap.check.mutants.wp import WP_MUTANTS

# The order is the table's: `pagemap check --mutants` prints it, and the tests
# and docs that name mutants by place depend on it.
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
    + EXT2_NAMEI_MUTANTS
)


def lookup_mutant(name: str) -> Mutant:
    for m in MUTANTS + EQUIVALENT_MUTANTS:
        if m.name == name:
            return m
    known = ", ".join(m.name for m in MUTANTS)
    raise ValueError(f"unknown mutant {name!r} (known: {known})")
