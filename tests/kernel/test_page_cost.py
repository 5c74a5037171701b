"""What a cached page costs beyond its frame, measured by tracemalloc (no timing)."""

from __future__ import annotations

import tracemalloc

import pytest

from pagemap import PG_UPTODATE, PGSIZE, Machine, Page, PageMap

PAGES = 4000
LIMIT = 400  # bytes a cached page may cost beyond its 4096


class Instant:
    def readpage(self, pm: PageMap, page: Page) -> None:
        page.flags.fetch_or(PG_UPTODATE)

    def writepage(self, pm: PageMap, page: Page) -> None:
        pass


@pytest.mark.parametrize("executor", ["threads", "sim"])
def test_a_cached_page_costs_a_few_words(executor: str) -> None:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        machine = Machine(cores=1, memory=(PAGES + 1) * PGSIZE, executor=executor)
        pm = machine.page_map(Instant())
        for i in range(PAGES):
            pm.put_page(pm.load_page(i))
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert pm.nr_pages == PAGES and len(machine.reclaim.policy) == PAGES
    per_page = (after - before - (PAGES + 1) * PGSIZE) / PAGES
    assert per_page <= LIMIT, f"a cached page costs {per_page:.0f} bytes beyond its frame"
