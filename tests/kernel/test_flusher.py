"""The flusher: background eviction, and allocations that wait for it."""

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
def test_loaders_wait_for_the_flusher_instead_of_failing(kind: str) -> None:
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
        assert flusher.stats.reclaim_requests > 0 and flusher.stats.pages_freed > 0
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
    assert len(outcome) == 1 and "flusher could free none" in outcome[0]
    assert machine.check_quiescent() == []


def test_the_flusher_evicts_on_its_period() -> None:
    machine = sim(0, frames=8)
    pm = machine.page_map(CountingOps())
    flusher = machine.start_flusher(period=0.5)
    nap = machine.executor.semaphore(0, "nap")
    seen: list[int] = []

    def user() -> None:
        for index in range(4):
            pm.put_page(pm.load_page(index))
        nap.down_timeout(2.0)  # two virtual seconds: several flusher periods
        seen.append(pm.nr_pages)

    machine.spawn(user)
    machine.run()
    assert seen == [0]
    assert flusher.stats.rounds >= 2 and flusher.stats.reclaim_requests == 0


def test_a_failed_writeback_keeps_the_page_and_the_flusher_goes_on() -> None:
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
    # The page that failed was written by a later round: nothing was lost.
    assert ops.store == {0: page_bytes(0, 3), 1: page_bytes(1, 3)}
    assert pm.nr_pages == 0
    assert machine.check_quiescent() == []


def test_flusher_misuse_is_refused() -> None:
    machine = sim(0)
    with pytest.raises(ValueError, match="period"):
        machine.start_flusher(period=0)
    machine.start_flusher()
    with pytest.raises(ValueError, match="already running"):
        machine.start_flusher()
    machine.run()  # with nothing to serve, the flusher stops at once
    assert machine.flusher is not None and machine.flusher.stopping
