"""The flusher: kswapd (background reclaim) and writeback; allocations reclaim on their own."""

from __future__ import annotations

import errno

import pytest

from pagemap import PG_DIRTY, PGSIZE, Machine, OutOfMemory, PageMap
from tests.conftest import SIM_SEEDS, CountingOps, page_bytes, sim


def churn(pm: PageMap, first: int, count: int, version: int, problems: list[str]) -> None:
    """Load `count` pages in turn, dirty each, check it, let it go."""
    for index in range(first, first + count):
        page = pm.load_page(index)
        if bytes(page.data[8:16]) != page_bytes(index)[8:16]:
            problems.append(f"page {index} held the wrong bytes")
        page.data[:] = page_bytes(index, version)
        page.flags.fetch_or(PG_DIRTY)
        pm.put_page(page)


@pytest.mark.parametrize("kind", ["sim", "threads"])
def test_loaders_reclaim_instead_of_failing(kind: str) -> None:
    seeds = SIM_SEEDS if kind == "sim" else range(10)
    for seed in seeds:
        if kind == "sim":
            machine = sim(seed, frames=3)
        else:
            machine = Machine(cores=4, memory=4 * PGSIZE, executor="threads")
        ops = CountingOps()
        pm = machine.page_map(ops)
        flusher = machine.start_flusher(period=1.0)
        problems: list[str] = []
        # Three tasks touch 12 distinct pages with 3 frames: each needs evictions.
        for t in range(3):
            machine.spawn(churn, pm, 4 * t, 4, 1, problems)
        machine.run()
        assert problems == [], f"{kind} seed {seed}"
        assert machine.reclaim.stats.reclaimed > 0
        assert flusher.task is not None and flusher.task.done
        pm.remove_contig(0, 12)
        # Every dirtied page reached the backing store, each exactly once.
        assert {i: ops.store.get(i) for i in range(12)} == {
            i: page_bytes(i, 1) for i in range(12)
        }, f"{kind} seed {seed}: lost write"
        assert sorted(ops.writes) == list(range(12))
        assert machine.check_quiescent() == []
        assert machine.allocator.nr_free == 3


def test_out_of_memory_only_when_nothing_can_be_freed() -> None:
    machine = sim(0, frames=2)
    pm = machine.page_map(CountingOps())
    machine.start_flusher(period=1.0)
    outcome: list[str] = []

    def hog() -> None:
        held = [pm.load_page(0), pm.load_page(1)]
        try:
            pm.load_page(2)
        except OutOfMemory as exc:
            assert exc.errno == errno.ENOMEM
            outcome.append(str(exc))
        for page in held:
            pm.put_page(page)

    machine.spawn(hog)
    machine.run()
    assert len(outcome) == 1 and "none holds a page reclaim may free" in outcome[0]
    assert machine.check_quiescent() == []


def test_kswapd_reclaims_to_the_high_watermark_and_no_further() -> None:
    machine = sim(0, frames=64)
    pm = machine.page_map(CountingOps())
    flusher = machine.start_flusher(period=0.5)
    nap = machine.executor.semaphore(0, "nap")
    seen: list[int] = []

    def user() -> None:
        for index in range(64):  # every frame: under the low watermark
            pm.put_page(pm.load_page(index))
        nap.down_timeout(2.0)  # two virtual seconds: several periods
        seen.append(machine.allocator.nr_free)

    machine.spawn(user)
    machine.run()
    assert flusher.low <= seen[0] <= flusher.high
    assert flusher.stats.kicks >= 1 and flusher.stats.pages_freed == seen[0]
    assert machine.check_quiescent() == []


def test_writeback_writes_what_stayed_dirty_for_a_period_and_evicts_nothing() -> None:
    machine = sim(0, frames=16)
    ops = CountingOps()
    pm = machine.page_map(ops)
    flusher = machine.start_flusher(period=0.5)
    nap = machine.executor.semaphore(0, "nap")
    seen: list[list[int]] = []

    def user() -> None:
        churn(pm, 0, 2, 5, [])
        nap.down_timeout(0.3)  # less than a period: too young to write
        seen.append(sorted(ops.writes))
        nap.down_timeout(1.5)  # two more passes: aged, then written
        seen.append(sorted(ops.writes))

    machine.spawn(user)
    machine.run()
    assert seen == [[], [0, 1]]
    assert ops.store == {0: page_bytes(0, 5), 1: page_bytes(1, 5)}
    assert pm.nr_pages == 2 and flusher.stats.pages_written == 2
    assert machine.check_quiescent() == []


def test_a_failed_writeback_keeps_the_page_dirty_and_writeback_goes_on() -> None:
    machine = sim(0, frames=8)
    ops = CountingOps()
    pm = machine.page_map(ops)
    flusher = machine.start_flusher(period=0.5)
    ops.fail_writes = 1
    nap = machine.executor.semaphore(0, "nap")

    def user() -> None:
        churn(pm, 0, 2, 3, [])
        nap.down_timeout(3.0)

    machine.spawn(user)
    machine.run()
    assert len(flusher.stats.errors) == 1 and flusher.stats.errors[0].errno == errno.EIO
    # The page that failed was written by a later pass: nothing was lost.
    assert ops.store == {0: page_bytes(0, 3), 1: page_bytes(1, 3)}
    assert pm.nr_pages == 2
    assert machine.check_quiescent() == []


def test_flusher_misuse_is_refused() -> None:
    machine = sim(0)
    for bad in (0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="finite positive"):
            machine.start_flusher(period=bad)
    machine.start_flusher()
    with pytest.raises(ValueError, match="already running"):
        machine.start_flusher()
    machine.run()  # with nothing to serve, the flusher stops at once
    assert machine.flusher is not None and machine.flusher.stopping
