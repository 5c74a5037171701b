"""The scenarios of issue 18's "races reached": each reaches its race and can fail.

A scenario that holds proves something only if it reaches the race it names
and its oracles would see the bug that race allows.  Here each new scenario
meets a mutant of the kernel that breaks its race (check/mutants/) and
must be failed by it within a few DPOR schedules; and ext2-hole-race must
reach the lost splice (two allocators, one file block) that unreached.txt
once called impossible.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from pagemap import e2fsprogs
from pagemap.check.coverage import default_exclusions, race_exclusions
from pagemap.check.explore import explore_model
from pagemap.check.mutants import lookup_mutant
from pagemap.check.races import census
from pagemap.check.scenarios import ext2 as ext2_scenarios
from pagemap.check.scenarios import registry
from pagemap.kernel.fs.ext2.balloc import Allocator
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


# -- the races the census once found unraced (check/scenarios/races.py, races_ext2.py) --

# scenario -> the kernel functions its census (DPOR at one preemption) races;
# none of them may be listed in unreached.txt as a function no scenario races.
RACED = {
    "close-use": ["kernel/vfs.py: File._check_open", "kernel/vfs.py: File.closed"],
    "sync-truncate": ["kernel/vfs.py: Inode.fsync", "kernel/vfs.py: File.sync_backing"],
    "expire-remove": ["kernel/writeback.py: Writeback.writeback_expired"],
    "truncate-held": ["kernel/reclaim.py: Reclaim.removed"],
    "reclaim-contend": [
        "kernel/flusher.py: Flusher.reclaim_round",
        "kernel/reclaim.py: Reclaim.direct",
    ],
    "reclaim-remove": ["kernel/removal.py: Removal.remove_pages"],
    "ext2-truncate-write": [
        "kernel/fs/ext2/truncate.py: Truncate.truncate",
        "kernel/fs/ext2/bmap.py: BlockMap._apply",
    ],
}

# scenario -> functions it runs whose races unreached.txt says the design
# excludes (the reason names the lock or order): run, and never raced.
ORDERED = {
    "ext2-close-unlinked": ["kernel/fs/ext2/fs.py: Ext2FS._maybe_free"],
    "ext2-forget-writeback": ["kernel/blockdev.py: BlockDevice.forget_buffer"],
    "truncate-held": ["kernel/page.py: PageAllocator.decref"],
}

CAUGHT_TOO = [
    ("close-use", "closed-file-usable"),
    ("sync-truncate", "fsync-skips-mappings"),
    ("expire-remove", "dirty-cleared-late"),
    ("truncate-held", "drop-held-frees-now"),
    ("reclaim-contend", "kswapd-keeps-mutex"),
    ("ext2-close-unlinked", "close-frees-in-use"),
    ("ext2-indirect-hole", "ext2-alloc-looks-unlocked"),
    ("ext2-dindirect-cut", "ext2-frees-indirect-first"),
]


@pytest.mark.parametrize("name", sorted(RACED))
def test_the_scenario_races_the_functions_it_names(name: str) -> None:
    found = census(registry()[name].model())
    listed = race_exclusions(default_exclusions())
    for function in RACED[name]:
        assert found.raced[function] > 0, f"{name} does not race {function}"
        assert function not in listed, f"unreached.txt lists {function}, which {name} races"


@pytest.mark.parametrize("name", sorted(ORDERED))
def test_what_unreached_txt_calls_ordered_by_design_runs_and_is_never_raced(name: str) -> None:
    found = census(registry()[name].model())
    listed = race_exclusions(default_exclusions())
    for function in ORDERED[name]:
        assert function in listed, function
        assert found.steps[function] > 0, f"{name} does not run {function}"
        assert found.raced[function] == 0, f"{name} races {function}: its reason is wrong"


def test_unreached_txt_has_no_race_still_to_come() -> None:
    text = (resources.files("pagemap.check") / "unreached.txt").read_text()
    assert "NOT RACED" not in text


@pytest.mark.parametrize(("scenario", "mutant"), CAUGHT_TOO, ids=lambda x: str(x))
def test_the_new_scenario_catches_a_mutant_of_its_race(scenario: str, mutant: str) -> None:
    with lookup_mutant(mutant).applied():
        summary = explore_model(
            registry()[scenario].model(), "dpor", bound=2, budget=1_000, shrink=False
        )
    assert summary.trace is not None, f"{scenario} does not catch {mutant}"


def _spy(cls: type, name: str, seen: list[Any], what: Any) -> Any:
    real = getattr(cls, name)

    def spy(self: Any, *args: Any) -> Any:
        got = real(self, *args)
        seen.append(what(self, args, got))
        return got

    return mock.patch.object(cls, name, spy)


def test_two_allocators_race_for_the_last_free_block() -> None:
    """ext2-last-block reaches the re-check under the group's lock: an
    allocator that found the count non-zero before the lock (no scheduling
    point between our look and its own) finds it zero under it, the other
    having taken the last block, and answers "none here".  The look before
    the lock is a plain read (a hint, re-checked under the lock, as Linux's
    ext2 reads bg_free_blocks_count), named in its step's footprint
    (Allocator._count), so DPOR aims at it: bounded DPOR, to the end, runs
    the schedule where the allocator loses."""
    seen: list[tuple[int, int]] = []
    real = Allocator._alloc_in_group

    def spy(self: Allocator, group: Any, start: int) -> int:
        before = group.desc.free_blocks_count
        got = real(self, group, start)
        seen.append((before, got))
        return got

    with mock.patch.object(Allocator, "_alloc_in_group", spy):
        summary = explore_model(registry()["ext2-last-block"].model(), "dpor", bound=2)
    assert summary.trace is None and summary.exhaustive
    assert any(before and not got for before, got in seen), "no lost race for the last block"


def test_an_allocation_splices_into_an_indirect_block_that_exists() -> None:
    """ext2-indirect-hole walks down an existing indirect block and splices the
    new block into it (BlockMap._splice with a holder), and loses the splice
    to the other allocator in some schedule."""
    seen: list[tuple[bool, int]] = []
    with _spy(BlockMap, "_splice", seen, lambda self, args, got: (args[2] is not None, got)):
        summary = explore_model(registry()["ext2-indirect-hole"].model(), "dpor", bound=1)
    assert summary.trace is None and summary.exhaustive
    assert any(holder and got for holder, got in seen)
    assert any(holder and not got for holder, got in seen)


def test_a_cut_inside_a_double_indirect_subtree() -> None:
    """ext2-dindirect-cut cuts /e inside its double indirect subtree: the
    indirect block under it is cut at level 1, not freed whole."""
    seen: list[int] = []
    with _spy(BlockMap, "_plan_cut", seen, lambda self, args, got: args[1]):
        summary = explore_model(registry()["ext2-dindirect-cut"].model(), "dpor", bound=0)
    assert summary.trace is None and summary.exhaustive
    assert 1 in seen and 2 in seen


def test_e2fsck_runs_once_per_distinct_final_image() -> None:
    """The ext2 scenarios' e2fsck verdict is cached by the image's bytes:
    ext2-namespace-writeback's schedules, at one preemption, end in one image,
    so e2fsck runs once (the dir-add-puts-first mutant is found as soon,
    in schedules, and in a fraction of the time: pagemap check --mutants)."""
    calls: list[str] = []
    real = e2fsprogs.fsck

    def counting(image: Any) -> Any:
        calls.append(hashlib.sha256(Path(image).read_bytes()).hexdigest())
        return real(image)

    ext2_scenarios._e2fsck_problems.cache_clear()
    with mock.patch.object(e2fsprogs, "fsck", counting):
        summary = explore_model(registry()["ext2-namespace-writeback"].model(), "dpor", bound=1)
    assert summary.trace is None and summary.exhaustive
    assert summary.schedules > 10
    assert len(calls) == len(set(calls)) >= 1
    assert len(calls) < summary.schedules
