"""The protection oracle (oracles/protection.py): what a returned mprotect or
munmap forbids, what a later call gives back, and that it judges only the
process and pages named; and that the tlb-range scenario's oracle is what
catches a flush one page short."""

from __future__ import annotations

import pytest

from pagemap.check.explore import explore_model
from pagemap.check.mutants import lookup_mutant
from pagemap.check.scenarios import lookup
from pagemap.hw.memory import PGSIZE
from pagemap.kernel.mman import PROT_NONE, PROT_READ, PROT_RW
from pagemap.oracles.protection import PROTECTION, Protection

A = 0x1000_0000


class Failed(Exception):
    pass


def _oracle() -> tuple[Protection, list[str]]:
    seen: list[str] = []

    def fail(oracle: str, message: str) -> None:
        assert oracle == PROTECTION
        seen.append(message)
        raise Failed(message)

    return Protection(fail), seen


def test_a_store_after_mprotect_read_only_returned_is_a_violation_and_a_load_is_not() -> None:
    o, seen = _oracle()
    o.forbid(1, A, A + 2 * PGSIZE, PROT_READ, "mprotect")
    o.landed("load", 1, A + PGSIZE, False)
    o.landed("store elsewhere", 1, A + 2 * PGSIZE, True)
    o.landed("store by another process", 2, A, True)
    assert seen == []
    with pytest.raises(Failed):
        o.landed("store", 1, A + PGSIZE + 8, True)
    assert "after mprotect of 0x10000000-0x10002000 returned" in seen[0]


def test_munmap_forbids_loads_too_and_a_later_call_gives_part_back() -> None:
    o, seen = _oracle()
    o.forbid(1, A, A + 3 * PGSIZE, PROT_NONE, "munmap")
    o.allow(1, A + PGSIZE, A + 2 * PGSIZE)  # an mmap there begins
    o.landed("load", 1, A + PGSIZE, False)
    o.landed("store", 1, A + PGSIZE, True)
    with pytest.raises(Failed):
        o.landed("load", 1, A + 2 * PGSIZE, False)
    with pytest.raises(Failed):
        o.landed("load", 1, A, False)
    assert len(seen) == 2


def test_mprotect_writable_forbids_nothing() -> None:
    o, seen = _oracle()
    o.forbid(1, A, A + PGSIZE, PROT_READ, "mprotect")
    o.forbid(1, A, A + PGSIZE, PROT_RW, "mprotect")
    o.landed("store", 1, A, True)
    assert seen == []


def test_the_scenario_holds_and_a_flush_one_page_short_is_caught_by_this_oracle() -> None:
    model = lookup("tlb-range").model()
    assert explore_model(model, "dpor", bound=2).trace is None
    with lookup_mutant("flush-range-short").applied():
        trace = explore_model(model, "dpor", bound=2, budget=500).trace
    assert trace is not None and trace.oracle == PROTECTION
