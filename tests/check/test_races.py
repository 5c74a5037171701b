"""Races reached (check/races.py): the census of which kernel functions some
scenario races, and how `--coverage` reads it against unreached.txt."""

from __future__ import annotations

import sys
from collections import Counter

from pagemap.check.coverage import CoverageReport, load_exclusions, race_exclusions
from pagemap.check.races import Census, census, site
from pagemap.check.scenarios import lookup


def test_store_remove_races_the_removal_protocol_against_the_store() -> None:
    found = census(lookup("store-remove").model())
    assert found.schedules > 1
    # Removal's marking and PTE clearing race the store's walk of that PTE.
    for raced in (
        "kernel/removal.py: Removal._mark_for_removal",
        "kernel/unmap_marked.py: UnmapMarked._pte_mark_not_present",
        "hw/mmu.py: MMU._walk",
    ):
        assert found.raced[raced] > 0, raced
    # A function that takes points every schedule, but only under a lock no
    # other task of this scenario takes at that moment: counted, never raced.
    assert found.steps["kernel/page.py: PageAllocator._try_alloc"] > 0
    assert found.raced["kernel/page.py: PageAllocator._try_alloc"] == 0
    assert "kernel/page.py: PageAllocator._try_alloc" in found.unraced()


def test_a_step_is_named_by_the_innermost_kernel_or_hardware_function() -> None:
    assert site(sys._getframe()) == ""  # a test is neither kernel nor hardware code


def test_censuses_add_up_and_travel_as_json() -> None:
    a = Census(Counter({"kernel/x.py: f": 2}), Counter({"kernel/x.py: f": 1}), 3)
    b = Census(Counter({"kernel/x.py: g": 5}), Counter(), 4)
    a.add(Census.from_json(b.to_json()))
    assert a.steps == {"kernel/x.py: f": 2, "kernel/x.py: g": 5}
    assert a.unraced() == ["kernel/x.py: g"] and a.schedules == 7


def test_unreached_txt_race_entries_excuse_a_function_and_go_stale_when_raced() -> None:
    listed = race_exclusions(
        load_exclusions(
            "kernel/x.py: race g  # taken only under a lock nothing else takes\n"
            "kernel/x.py: if x:  # a line entry, not a race\n"
        )
    )
    assert listed == {"kernel/x.py: g": "taken only under a lock nothing else takes"}
    report = CoverageReport([], [])
    report.races = Census(Counter({"kernel/x.py: f": 1, "kernel/x.py: g": 1}), Counter(), 1)
    report.race_listed = listed
    assert report.unraced == ["kernel/x.py: f"]
    assert not report.complete
    report.races.raced["kernel/x.py: f"] = 1
    assert report.unraced == [] and report.complete
