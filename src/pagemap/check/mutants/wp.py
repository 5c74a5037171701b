"""Mutants of write-protect dirty tracking (kernel/mkwrite.py, page_mkclean
in kernel/rmap.py), each caught by a scenario of check/scenarios/wp.py."""

from __future__ import annotations

from collections.abc import Callable

import pagemap.kernel.fault as fault_module
from pagemap.check.mutants.base import Mutant
from pagemap.kernel.mkwrite import MkwriteSwitches, _mkwrite
from pagemap.kernel.page import PG_DIRTY, Page, lock_page, unlock_page
from pagemap.kernel.pagemap import PageMap
from pagemap.kernel.rmap import ReverseMap
from pagemap.sync.atomic import AtomicWord


def _mkclean_skips(pte: AtomicWord, page: Page) -> bool:
    return False  # BUG: the PTE stays writable, its D bit uncounted


def _mkwrite_dirties_late(
    proc: MkwriteSwitches, mapping: PageMap, page: Page, install: Callable[[], bool]
) -> None:
    lock_page(page)
    try:
        _mkwrite(mapping, page)
        install()
        page.flags.fetch_or(PG_DIRTY)  # BUG: a store through the new PTE finds the page clean
    finally:
        unlock_page(page)


def _mkwrite_unlocks_early(
    proc: MkwriteSwitches, mapping: PageMap, page: Page, install: Callable[[], bool]
) -> None:
    lock_page(page)
    try:
        _mkwrite(mapping, page)
        page.flags.fetch_or(PG_DIRTY)
    finally:
        unlock_page(page)  # BUG: a writeback may clean the page before its PTE is writable
    install()


WP_MUTANTS = (
    Mutant(
        "mkclean-skips-pte",
        "page_mkclean leaves a PTE of the page writable and dirty",
        "wp-mkclean",
        {"_mkclean_one": staticmethod(_mkclean_skips)},
        budget=200,
        target=ReverseMap,
    ),
    Mutant(
        "mkwrite-dirties-late",
        "a write fault makes the PTE writable before it dirties the page",
        "wp-mkwrite",
        {"page_mkwrite_fault": _mkwrite_dirties_late},
        budget=2000,
        target=fault_module,
    ),
    Mutant(
        "mkwrite-unlocks-early",
        "a write fault drops the page lock before its PTE is writable",
        "wp-mkwrite",
        {"page_mkwrite_fault": _mkwrite_unlocks_early},
        budget=2000,
        target=fault_module,
    ),
)
