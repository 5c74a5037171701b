"""The page map's contract, under both executors.

Each concurrency property runs under the SimExecutor for every seed in
SIM_SEEDS (500) and under real threads; the oracles are checked after each run.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

import pytest

from pagemap import (
    PG_DIRTY,
    PG_UPTODATE,
    PGSIZE,
    IOFailure,
    KernelBug,
    Machine,
    OutOfMemory,
    Page,
    PageMap,
    RefcountOverflow,
    decode_slot,
)
from pagemap.kernel.slot import PM_REFCNT_MAX, PM_REFCNT_SHIFT, PM_REMOVAL
from tests.conftest import SIM_SEEDS, CountingOps, page_bytes, sim

THREAD_ROUNDS = range(20)


def threads(frames: int = 16) -> Machine:
    return Machine(cores=4, memory=(frames + 1) * PGSIZE, executor="threads")


def machines(frames: int = 16) -> list[tuple[str, Callable[[int], Machine]]]:
    return [
        ("sim", lambda seed: sim(seed, frames=frames)),
        ("threads", lambda seed: threads(frames)),
    ]


def seeds_for(kind: str) -> range:
    return SIM_SEEDS if kind == "sim" else THREAD_ROUNDS


def holds(machine: Machine, pm: PageMap, page: Page, index: int) -> str | None:
    """Why `page` is not a live, correct page for `index` right now, or None."""
    if machine.allocator.is_free(page.ppn):
        return f"page {index} is in free frame {page.ppn}"
    if page.mapping is not pm or page.index != index:
        return f"frame {page.ppn} now caches page {page.index}, not {index}"
    if not page.flags.load() & PG_UPTODATE:
        return f"page {index} handed out not up to date"
    if bytes(page.data[:8]) != page_bytes(index)[:8]:
        return f"page {index} holds the wrong bytes"
    return None


def assert_quiet(machine: Machine, frames: int) -> None:
    assert machine.check_quiescent() == []
    cached = sum(pm.nr_pages for pm in machine.page_maps)
    assert machine.allocator.nr_free + cached == frames, "a frame leaked"


@pytest.mark.parametrize(("kind", "make"), machines())
def test_racing_loaders_read_once_and_share_the_page(
    kind: str, make: Callable[[int], Machine]
) -> None:
    for seed in seeds_for(kind):
        machine = make(seed)
        ops = CountingOps()
        pm = machine.page_map(ops)
        got: list[int] = []

        def loader() -> None:
            page = pm.load_page(3)
            got.append(page.ppn)
            assert holds(machine, pm, page, 3) is None
            pm.put_page(page)

        for _ in range(4):
            machine.spawn(loader)
        machine.run()
        assert ops.reads == {3: 1}, f"seed {seed}"
        assert len(set(got)) == 1 and len(got) == 4
        assert decode_slot(pm.tree.lookup_slot(3).value).refcnt == 0  # type: ignore[union-attr]
        assert_quiet(machine, 16)


@pytest.mark.parametrize(("kind", "make"), machines(frames=6))
def test_loaders_racing_removal_never_see_a_freed_page(
    kind: str, make: Callable[[int], Machine]
) -> None:
    removed_total = 0
    for seed in seeds_for(kind):
        machine = make(seed)
        pm = machine.page_map(CountingOps())
        problems: list[str] = []

        def loader(first: int) -> None:
            for i in range(3):
                index = (first + i) % 4
                page = pm.load_page(index)
                # Hold the page across scheduling points; a remover must spare it.
                for _ in range(2):
                    page.flags.load()
                    problems.extend(filter(None, [holds(machine, pm, page, index)]))
                pm.put_page(page)

        def remover() -> None:
            nonlocal removed_total
            for _ in range(3):
                removed_total += pm.remove_contig(0, 4)

        machine.spawn(loader, 0)
        machine.spawn(loader, 2)
        machine.spawn(remover)
        machine.run()
        assert problems == [], f"{kind} seed {seed}: {problems}"
        assert_quiet(machine, 6)
    assert removed_total > 0  # removal did happen, racing the loaders


@pytest.mark.parametrize(("kind", "make"), machines())
def test_dirty_page_is_written_back_exactly_once_before_it_is_freed(
    kind: str, make: Callable[[int], Machine]
) -> None:
    for seed in seeds_for(kind):
        machine = make(seed)
        ops = CountingOps()
        pm = machine.page_map(ops)

        def writer(index: int) -> None:
            page = pm.load_page(index)
            page.data[:] = page_bytes(index, version=1)
            page.flags.fetch_or(PG_DIRTY)
            pm.put_page(page)

        def remover() -> None:
            pm.remove_contig(0, 2)

        machine.spawn(writer, 0)
        machine.spawn(writer, 1)
        machine.spawn(remover)
        machine.run()
        for index in (0, 1):
            if pm.tree.lookup_slot(index) is None:
                # Freed during the run: its bytes must have reached the store.
                assert ops.store[index] == page_bytes(index, 1), f"seed {seed}"
        pm.remove_contig(0, 2)
        assert pm.nr_pages == 0
        for index in (0, 1):
            assert ops.store[index] == page_bytes(index, 1), f"{kind} seed {seed}: lost write"
            assert ops.writes.count(index) == 1, f"{kind} seed {seed}: {ops.writes}"
        assert_quiet(machine, 16)


def test_writeback_writes_without_evicting() -> None:
    machine = sim(0)
    ops = CountingOps()
    pm = machine.page_map(ops)
    for index in range(4):
        page = pm.load_page(index)
        if index % 2:
            page.data[:] = page_bytes(index, 7)
            page.flags.fetch_or(PG_DIRTY)
        pm.put_page(page)
    assert pm.writeback(0, 4) == 2
    assert sorted(ops.writes) == [1, 3]
    assert pm.nr_pages == 4
    assert ops.store[3] == page_bytes(3, 7)
    assert pm.writeback(0, 4) == 0  # now clean
    assert pm.remove_contig(0, 4) == 4
    assert sorted(ops.writes) == [1, 3]  # removal found nothing more to write
    assert_quiet(machine, 16)


def test_writeback_racing_writers_loses_nothing() -> None:
    for seed in SIM_SEEDS:
        machine = sim(seed)
        ops = CountingOps()
        pm = machine.page_map(ops)

        def writer(version: int) -> None:
            for index in range(2):
                page = pm.load_page(index)
                page.data[:] = page_bytes(index, version)
                page.flags.fetch_or(PG_DIRTY)
                pm.put_page(page)

        def syncer() -> None:
            pm.writeback(0, 2)

        machine.spawn(writer, 1)
        machine.spawn(syncer)
        machine.spawn(writer, 2)
        machine.spawn(syncer)
        machine.run()
        pages = [pm.load_page(i) for i in range(2)]
        final = {i: bytes(page.data) for i, page in enumerate(pages)}
        for page in pages:
            pm.put_page(page)
        pm.writeback(0, 2)
        assert {i: ops.store[i] for i in range(2)} == final, f"seed {seed}: lost write"
        assert_quiet(machine, 16)


class GatedOps(CountingOps):
    """readpage/writepage wait on a semaphore first, so a test can hold a
    loader or remover mid-call while others pile up behind it."""

    def __init__(self, machine: Machine) -> None:
        super().__init__()
        self.gate = machine.executor.semaphore(0, "gate")
        self.gate_reads = False
        self.gate_writes = False

    def readpage(self, pm: PageMap, page: Page) -> None:
        if self.gate_reads:
            self.gate.down()
        super().readpage(pm, page)

    def writepage(self, pm: PageMap, page: Page) -> None:
        if self.gate_writes:
            self.gate.down()
        super().writepage(pm, page)


def refcount(pm: PageMap, index: int) -> int:
    slot = pm.tree.lookup_slot(index)
    return -1 if slot is None else decode_slot(slot.value).refcnt


def wait_for(machine: Machine, cond: Callable[[], bool]) -> None:
    while not cond():
        machine.executor.relax()


@pytest.mark.parametrize("kind", ["sim", "threads"])
def test_readpage_error_reaches_every_waiting_loader(kind: str) -> None:
    for seed in seeds_for(kind):
        machine = sim(seed) if kind == "sim" else threads()
        ops = GatedOps(machine)
        ops.gate_reads = True
        ops.fail_reads = 1
        pm = machine.page_map(ops)
        outcomes: list[str] = []

        def loader() -> None:
            try:
                page = pm.load_page(5)
            except IOFailure as exc:
                assert exc.errno == errno.EIO
                outcomes.append("EIO")
            else:
                outcomes.append("page")
                pm.put_page(page)

        def opener() -> None:
            # Let the read fail only once all three loaders hold the page.
            wait_for(machine, lambda: refcount(pm, 5) == 3)
            ops.gate.up()

        for _ in range(3):
            machine.spawn(loader)
        machine.spawn(opener)
        machine.run()
        assert outcomes == ["EIO"] * 3, f"{kind} seed {seed}"
        assert ops.reads == {5: 1}
        assert pm.nr_pages == 0 and pm.tree.lookup_slot(5) is None
        assert_quiet(machine, 16)
        assert machine.allocator.nr_free == 16
        # The error is not sticky: the next load reads afresh.
        ops.gate_reads = False
        page = pm.load_page(5)
        assert holds(machine, pm, page, 5) is None
        pm.put_page(page)


def test_readpage_error_under_random_races_leaks_nothing() -> None:
    for seed in SIM_SEEDS:
        machine = sim(seed)
        ops = CountingOps()
        ops.fail_reads = 1
        pm = machine.page_map(ops)
        results: list[str] = []

        def loader() -> None:
            try:
                page = pm.load_page(2)
            except IOFailure:
                results.append("EIO")
                return
            results.append("ok" if holds(machine, pm, page, 2) is None else "bad")
            pm.put_page(page)

        for _ in range(3):
            machine.spawn(loader)
        machine.spawn(pm.remove_contig, 0, 4)
        machine.run()
        assert "bad" not in results and results.count("EIO") >= 1, f"seed {seed}: {results}"
        assert_quiet(machine, 16)


def test_readpage_must_leave_the_page_up_to_date() -> None:
    machine = sim(0)

    class Lazy(CountingOps):
        def readpage(self, pm: PageMap, page: Page) -> None:
            pass

    pm = machine.page_map(Lazy())
    with pytest.raises(KernelBug, match="not up to date"):
        pm.load_page(0)
    assert_quiet(machine, 16)


@pytest.mark.parametrize("kind", ["sim", "threads"])
def test_a_second_remover_returns_zero_at_once(kind: str) -> None:
    machine = sim(1) if kind == "sim" else threads()
    ops = GatedOps(machine)
    pm = machine.page_map(ops)
    for index in range(3):
        page = pm.load_page(index)
        page.flags.fetch_or(PG_DIRTY)
        pm.put_page(page)
    ops.gate_writes = True
    counts: dict[str, int] = {}

    def first() -> None:
        counts["first"] = pm.remove_contig(0, 3)

    def second() -> None:
        wait_for(machine, lambda: pm.removal.value == 1)  # the first is mid-protocol
        counts["second"] = pm.remove_contig(0, 3)
        ops.gate_writes = False
        for _ in range(3):
            ops.gate.up()

    machine.spawn(first)
    machine.spawn(second)
    machine.run()
    assert counts == {"first": 3, "second": 0}
    assert_quiet(machine, 16)


def test_out_of_memory_leaves_no_trace() -> None:
    machine = sim(0, frames=2)
    pm = machine.page_map(CountingOps())
    held = [pm.load_page(0), pm.load_page(1)]
    with pytest.raises(OutOfMemory) as info:
        pm.load_page(2)
    assert info.value.errno == errno.ENOMEM
    assert pm.nr_pages == 2 and pm.tree.lookup_slot(2) is None and not pm.lock.held
    for page in held:
        pm.put_page(page)
    assert_quiet(machine, 2)


def test_pages_with_references_are_skipped_and_removal_reports_its_count() -> None:
    machine = sim(0)
    pm = machine.page_map(CountingOps())
    kept = pm.load_page(1)
    for index in (0, 2):
        pm.put_page(pm.load_page(index))
    assert pm.remove_contig(0, 3) == 2
    assert pm.nr_pages == 1 and pm.tree.lookup_slot(1) is not None
    assert holds(machine, pm, kept, 1) is None
    pm.put_page(kept)
    assert pm.remove_contig(0, 0) == 0
    assert pm.remove_contig(0, 2**60) == 1
    assert_quiet(machine, 16)


def test_bad_ranges_and_puts_are_errors_with_errnos() -> None:
    machine = sim(0)
    pm = machine.page_map(CountingOps())
    with pytest.raises(OSError) as info:
        pm.remove_contig(-1, 2)
    assert info.value.errno == errno.EINVAL
    with pytest.raises(OSError):
        pm.load_page(-3)
    page = pm.load_page(0)
    pm.put_page(page)
    with pytest.raises(KernelBug, match="no reference"):
        pm.put_page(page)
    assert_quiet(machine, 16)


def test_info_names_the_map_and_its_pages() -> None:
    machine = sim(0)
    pm = machine.page_map(CountingOps(), name="data.bin")
    pm.put_page(pm.load_page(0))
    text = pm.info()
    assert text.splitlines()[0] == "Page Map data.bin"
    assert "Num pages: 1" in text


def test_find_run_takes_the_cached_run_and_stops_at_a_hole_or_a_page_being_read() -> None:
    machine = sim(0, frames=200)
    pm = machine.page_map(CountingOps())
    for i in (*range(0, 70), *range(71, 80)):  # across a leaf, then a hole at 70
        pm.put_page(pm.load_page(i))
    run = pm.find_run(3, 100)
    assert [p.index for p in run] == list(range(3, 70))
    assert all(decode_slot(pm.slots.value(p.ppn)).refcnt == 1 for p in run)
    pm.put_run(run)
    assert [p.index for p in pm.find_run(71, 5)] == list(range(71, 76))  # at most n
    assert pm.find_run(70, 5) == [] and pm.find_run(500, 5) == []
    pm.put_run(pm.find_run(71, 5))
    pm.put_run(pm.find_run(71, 5))  # (the first of these was never given back)
    reading = pm.find_page(79)
    assert reading is not None
    reading.flags.fetch_and(~PG_UPTODATE)  # as if a loader were still at it
    assert [p.index for p in pm.find_run(77, 5)] == [77, 78]
    reading.flags.fetch_or(PG_UPTODATE)
    pm.put_page(reading)
    for i in range(77, 79):
        pm.put_page(pm.allocator.pages[pm.tree.lookup(i)])
    for i in range(71, 76):
        pm.put_page(pm.allocator.pages[pm.tree.lookup(i)])
    assert machine.check_quiescent() == []


def test_find_run_clears_removal_as_a_finder_does_and_gives_back_on_overflow() -> None:
    machine = sim(0)
    pm = machine.page_map(CountingOps())
    for i in range(3):
        pm.put_page(pm.load_page(i))
    slot = pm.slots.ref(pm.tree.lookup(1))
    slot.fetch_or(PM_REMOVAL)  # a remover marked page 1
    run = pm.find_run(0, 3)
    assert not slot.value & PM_REMOVAL  # found, so spared
    pm.put_run(run)
    full = pm.slots.ref(pm.tree.lookup(2))
    full.fetch_add(PM_REFCNT_MAX << PM_REFCNT_SHIFT)  # page 2 at the most references
    with pytest.raises(RefcountOverflow):
        pm.find_run(0, 3)
    assert [decode_slot(pm.slots.value(pm.tree.lookup(i))).refcnt for i in (0, 1)] == [0, 0]
    full.fetch_add(-(PM_REFCNT_MAX << PM_REFCNT_SHIFT))
    assert machine.check_quiescent() == []


def test_a_sequential_read_takes_a_run_of_pages_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f"
    data = bytes(range(256)) * (100 * PGSIZE // 256)
    path.write_bytes(data)
    machine = Machine(cores=1, memory=128 * PGSIZE, executor="threads")
    f = machine.open(path, "r")
    assert f.pread(100 * PGSIZE, 0) == data  # cold: page by page
    runs: list[int] = []
    find_run = f.mapping.find_run

    def spying(index: int, n: int) -> list[Page]:
        found = find_run(index, n)
        runs.append(len(found))
        return found

    monkeypatch.setattr(f.mapping, "find_run", spying)
    assert f.pread(90 * PGSIZE, 5 * PGSIZE + 7) == data[5 * PGSIZE + 7 : 95 * PGSIZE + 7]
    assert runs == [16] * 5 + [11]  # READ_RUN pages a run (one across two leaves)
    assert machine.check_quiescent() == []
