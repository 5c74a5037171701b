"""The seeded scenarios of tests/kernel/test_removal_mapped.py catch the mapping
mutants of the mutant table (pagemap.check.mutants) too, each within a budget
of seeds: the oracles there fail for the reasons kernel/mm.py's docstring gives,
not only the checker's."""

from __future__ import annotations

import pytest

from pagemap.check.mutants import lookup_mutant
from tests.kernel.test_removal_mapped import SCENARIOS, World

# mutant -> (seeded scenario, seeds within which it must be caught)
CAUGHT_BY = {
    "settle-drops-dirty": ("munmap_mprotect_vs_removal", 20),
    "proc-no-shootdown": ("stores_vs_removal", 20),
    "fault-overwrites-pte": ("stores_vs_removal", 200),
    "fault-after-munmap": ("munmap_mprotect_vs_removal", 400),
    "munmap-leaves-early": ("munmap_vs_removal", 1000),
}


@pytest.mark.parametrize("name", list(CAUGHT_BY))
def test_the_seeded_scenario_catches_the_mutant(name: str) -> None:
    scenario, budget = CAUGHT_BY[name]
    with lookup_mutant(name).applied():
        for seed in range(budget):
            # The seeds were counted under D-bit tracking, whose D bits these
            # mutants lose; under "wp" the first store has dirtied the page.
            world = World(seed, npages=5, dirty_tracking="dbit")
            SCENARIOS[scenario](world)
            try:
                problems = world.finish()
            except Exception as exc:
                problems = [repr(exc)]
            if problems:
                return
    pytest.fail(f"{scenario} did not catch {name!r} within {budget} seeds")
