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
from pagemap.oracles.coherence import SLOT
from pagemap.oracles.coherence import describe as describe_stamp

# Pages compared at once where none of them is cached (nothing_lost_in_runs).
RUN = 256


def cached_page_bytes(pm: PageMap, index: int) -> tuple[bytes, bool] | None:
    """(bytes, dirty) of the page cached at `index`, or None; at quiescence only."""
    if not _is_cached(pm, index):
        return None
    page = pm.allocator.pages[pm.tree.lookup(index)]
    return bytes(page.data), bool(page.flags.value & PG_DIRTY)


def nothing_lost(
    name: str,
    pm: PageMap,
    pages: int,
    backing: Callable[[int], bytes],
    expected: Callable[[int], bytes],
    size: int | None = None,
    describe: Callable[[bytes], str] = describe_stamp,
) -> list[Violation]:
    """Every page in [0, pages) is either in `backing` as `expected` says, or
    cached dirty holding it (each asked for by page index).  `describe` names
    an 8-byte slot of the file in the message (a stamp: its version, page and
    slot, and who stored it where the caller knows).  With `size`, the
    file's length: bytes of the last page past it are not compared, since a
    store there (Linux allows it, in the last page of a mapping) lives only in
    the cached page and never reaches the backing store."""

    def joined(page: Callable[[int], bytes]) -> Callable[[int, int], bytes]:
        def run(first: int, n: int) -> bytes:
            if n == 1:  # the join of one: a file of a page asks only this
                return bytes(page(first))
            return b"".join(page(i) for i in range(first, first + n))

        return run

    return nothing_lost_in_runs(name, pm, pages, joined(backing), joined(expected), size, describe)


def nothing_lost_in_runs(
    name: str,
    pm: PageMap,
    pages: int,
    backing: Callable[[int, int], bytes],
    expected: Callable[[int, int], bytes],
    size: int | None = None,
    describe: Callable[[bytes], str] = describe_stamp,
) -> list[Violation]:
    """nothing_lost, with `backing(first, n)` and `expected(first, n)` giving
    the bytes of n pages from `first` (zeros past the end): a run of pages
    none of which is cached is compared at once, so a file of a gibibyte
    costs a thousand comparisons, not a quarter of a million; a run that
    differs, or holds a cached page, is gone through page by page."""
    problems: list[Violation] = []
    with_cached = {i // RUN for i, _ in pm.tree.entries() if _is_cached(pm, i)}
    for first in range(0, pages, RUN):
        n = min(RUN, pages - first)
        if first // RUN not in with_cached:
            stored, want = backing(first, n), expected(first, n)
            if size is not None and size < (first + n) * PGSIZE:
                keep = size - first * PGSIZE
                stored, want = stored[:keep], want[:keep]
            if stored == want:
                continue
        for i in range(first, first + n):
            stored, want = backing(i, 1), expected(i, 1)
            problems.extend(_page_lost(name, pm, i, stored, want, size, describe))
    return problems


def _page_lost(
    name: str,
    pm: PageMap,
    i: int,
    stored: bytes,
    want: bytes,
    size: int | None,
    describe: Callable[[bytes], str],
) -> list[Violation]:
    keep = PGSIZE if size is None else max(0, min(PGSIZE, size - i * PGSIZE))
    cached = cached_page_bytes(pm, i)
    if cached and cached[1]:
        if cached[0][:keep] != want[:keep]:
            return [_lost(name, i, "the dirty cached page", cached[0], want, describe)]
        return []
    if stored[:keep] != want[:keep]:
        where = "the backing store, with the page clean," if cached else "the backing store"
        return [_lost(name, i, where, stored, want, describe)]
    if cached and cached[0][:keep] != want[:keep]:
        return [_lost(name, i, "the clean cached page", cached[0], want, describe)]
    return []


def _is_cached(pm: PageMap, index: int) -> bool:
    ppn = pm.tree.lookup(index)
    return bool(ppn) and bool(decode_slot(pm.slots.value(ppn)).ppn)


def size_kept(name: str, stored: int, size: int) -> list[Violation]:
    """The backing store holds `size` bytes, the file's length: no write at the
    end was lost, and nothing stored past the end reached it."""
    if stored == size:
        return []
    return [
        Violation(
            DURABILITY,
            f"{name} is {stored} bytes in its backing store, but {size} were written"
            + (": a store past the end reached it" if stored > size else ""),
        )
    ]


def _lost(
    name: str, index: int, where: str, got: bytes, want: bytes, describe: Callable[[bytes], str]
) -> Violation:
    """A write was lost, in words: what was stored where, and what is there
    after the run instead (the first slot that differs)."""
    got = got + bytes(PGSIZE - len(got))
    want = want + bytes(PGSIZE - len(want))
    off = next(i for i in range(0, PGSIZE, SLOT) if got[i : i + SLOT] != want[i : i + SLOT])
    return Violation(
        DURABILITY,
        f"a write was lost: {describe(want[off : off + SLOT])} was stored at offset "
        f"{index * PGSIZE + off} (page {index} of {name}), but after the run {where} "
        f"holds {describe(got[off : off + SLOT])}",
    )
