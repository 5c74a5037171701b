"""The scenarios of issue 18's "races reached": each reaches its race and can fail.

A scenario that holds proves something only if it reaches the race it names
and its oracles would see the bug that race allows.  Here each new scenario
meets a mutant of the kernel that breaks its race (check/mutants/) and
must be failed by it within a few DPOR schedules; and ext2-hole-race must
reach the lost splice (two allocators, one file block) that unreached.txt
once called impossible.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest

from pagemap.check.mutants import lookup_mutant
from pagemap.check.runner import explore_model
from pagemap.check.scenarios import registry
from pagemap.kernel.fs.ext2.bmap import BlockMap

# (scenario, the mutant it must catch)
CAUGHT = [
    ("msync-remove", "settle-drops-dirty"),
    ("msync-remove", "proc-no-shootdown"),
    ("fixed-remap-store", "settle-drops-dirty"),
    ("merge-fault-remove", "merge-unregisters-first"),
    ("alias-remove", "settle-drops-dirty"),
    ("alias-remove", "proc-no-shootdown"),
    ("mprotect-store", "proc-no-shootdown"),
    ("mprotect-store", "settle-drops-dirty"),
    ("truncate-vm", "proc-no-shootdown"),
    ("eio-read", "eio-keeps-lock"),
    ("eio-sync", "fsync-skips-mappings"),
    ("ext2-namespace-writeback", "dirty-cleared-late"),
    ("ext2-dindirect-truncate", "ext2-frees-indirect-first"),
]


@pytest.mark.parametrize(("scenario", "mutant"), CAUGHT, ids=lambda x: str(x))
def test_the_scenario_catches_a_mutant_of_its_race(scenario: str, mutant: str) -> None:
    with lookup_mutant(mutant).applied():
        summary = explore_model(
            registry()[scenario].model(), "dpor", bound=2, budget=1_000, shrink=False
        )
    assert summary.trace is not None, f"{scenario} does not catch {mutant}"


def test_two_allocators_race_for_one_block_of_a_hole() -> None:
    """ext2-hole-race reaches BlockMap._splice's lost splice: the slot it found
    empty was filled meanwhile, its block goes back and it walks again."""
    lost = []
    splice = BlockMap._splice

    def counting(self: BlockMap, *args: Any) -> int:
        got = splice(self, *args)
        lost.append(not got)
        return got

    with mock.patch.object(BlockMap, "_splice", counting):
        summary = explore_model(registry()["ext2-hole-race"].model(), "dpor", bound=2)
    assert summary.trace is None and summary.exhaustive
    assert any(lost), "no schedule of ext2-hole-race lost a splice"
