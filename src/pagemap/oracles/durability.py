"""Durability: nothing written is lost.

Asked at quiescence, once every process has exited (which passes the dirty
bits of its PTEs on to the pages): every page of the file either sits in the
backing store as the shadow says, or is cached dirty with the shadow's
bytes, so that the next writeback sends them there.  A clean cached page must
also match the backing store.  This asks the kernel nothing and runs none of
its code: the oracle does not depend on the writeback it judges.
"""

from __future__ import annotations

from collections.abc import Callable

from pagemap.hw.memory import PGSIZE
from pagemap.kernel.page import PG_DIRTY
from pagemap.kernel.pagemap import PageMap
from pagemap.kernel.slot import decode_slot
from pagemap.oracles import DURABILITY, Violation
from pagemap.oracles.coherence import SLOT, describe


def cached_page_bytes(pm: PageMap, index: int) -> tuple[bytes, bool] | None:
    """(bytes, dirty) of the page cached at `index`, or None; at quiescence only."""
    ppn = pm.tree.lookup(index)
    if not ppn or not decode_slot(pm.slots.value(ppn)).ppn:
        return None
    page = pm.allocator.pages[ppn]
    return bytes(page.data), bool(page.flags.value & PG_DIRTY)


def nothing_lost(
    name: str,
    pm: PageMap,
    pages: int,
    backing: Callable[[int], bytes],
    expected: Callable[[int], bytes],
) -> list[Violation]:
    """Every page in [0, pages) is either in `backing` as `expected` says, or
    cached dirty holding it."""
    problems: list[Violation] = []
    for i in range(pages):
        want = expected(i)
        cached = cached_page_bytes(pm, i)
        if cached and cached[1]:
            if cached[0] != want:
                problems.append(_lost(name, i, "the dirty cached page", cached[0], want))
            continue
        stored = backing(i)
        if stored != want:
            where = "the backing store, with the page clean" if cached else "the backing store"
            problems.append(_lost(name, i, where, stored, want))
        elif cached and cached[0] != want:
            problems.append(_lost(name, i, "the clean cached page", cached[0], want))
    return problems


def _lost(name: str, index: int, where: str, got: bytes, want: bytes) -> Violation:
    got = got + bytes(PGSIZE - len(got))
    off = next(i for i in range(0, PGSIZE, SLOT) if got[i : i + SLOT] != want[i : i + SLOT])
    return Violation(
        DURABILITY,
        f"{name} page {index}: {where} holds {describe(got[off : off + SLOT])} at offset "
        f"{index * PGSIZE + off}, but {describe(want[off : off + SLOT])} was written there",
    )
