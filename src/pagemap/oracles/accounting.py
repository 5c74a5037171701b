"""Accounting at quiescence: references, locks, flags, counts, and no leak."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pagemap.oracles import ACCOUNTING, Violation

if TYPE_CHECKING:
    from pagemap.machine import Machine


def quiescent(machine: Machine) -> list[Violation]:
    """What Machine.check_quiescent finds, as violations."""
    return [Violation(ACCOUNTING, p) for p in machine.check_quiescent()]


def no_leak(machine: Machine) -> list[Violation]:
    """With every process gone, every frame in use holds a cached page."""
    cached = sum(pm.nr_pages for pm in machine.page_maps)
    used = machine.allocator.nr_used
    if used != cached:
        return [
            Violation(
                ACCOUNTING,
                f"{used} frame(s) in use with every process gone, but the page maps cache "
                f"{cached} page(s): {used - cached} frame(s) leaked",
            )
        ]
    return []
