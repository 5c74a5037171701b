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
        before = tracemalloc.take_snapshot()
        machine = Machine(cores=1, memory=(PAGES + 1) * PGSIZE, executor=executor)
        pm = machine.page_map(Instant())
        for i in range(PAGES):
            pm.put_page(pm.load_page(i))
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    assert pm.nr_pages == PAGES and len(machine.reclaim.policy) == PAGES
    # Everything allocated but the frames themselves (hw/memory.py's buffer,
    # anonymous host memory today, which tracemalloc would not see anyway).
    frames = tracemalloc.Filter(False, "*/pagemap/hw/memory.py")
    grown = after.filter_traces([frames]).compare_to(before.filter_traces([frames]), "filename")
    per_page = sum(stat.size_diff for stat in grown) / PAGES
    assert per_page <= LIMIT, f"a cached page costs {per_page:.0f} bytes beyond its frame"
