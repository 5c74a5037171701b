"""remove_contig's batching, as in the seed: shootdowns for at most
PTR_ARR_LEN (10) processes at a time, and dirty pages written back at most
PTR_ARR_LEN at a time with the map lock dropped."""

from __future__ import annotations

from pathlib import Path

import pytest

from pagemap import MAP_SHARED, PG_DIRTY, PGSIZE, PROT_READ, PROT_WRITE, Machine, Page, PageMap
from pagemap.kernel import removal as pagemap_module
from pagemap.kernel.proc import Proc
from pagemap.sync.atomic import AtomicWord
from tests.conftest import CountingOps, page_bytes, sim


def test_shootdowns_are_batched_ten_processes_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert pagemap_module.PTR_ARR_LEN == 10
    machine = Machine(cores=2, memory="256KiB", executor="sim", seed=0)
    path = tmp_path / "f"
    path.write_bytes(bytes(PGSIZE))
    f = machine.open(path, "r+")
    procs = [machine.process() for _ in range(12)]
    bases = [p.mmap(PGSIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0) for p in procs]
    for i, (p, base) in enumerate(zip(procs, bases, strict=True)):
        p.store(base + i, bytes([i + 1]))  # every PTE of the page gets its own D bit
    events: list[str] = []
    owner = {id(w): p.pid for p in procs for w in p.ptes(0, 1 << 47)}
    mark = PageMap._pte_mark_not_present

    def marking(self: PageMap, pte: AtomicWord) -> None:
        events.append(f"mark p{owner[id(pte)]}")
        mark(self, pte)

    shoot = Proc.tlb_shootdown

    def shooting(self: Proc) -> None:
        events.append(f"shoot p{self.pid}")
        shoot(self)

    monkeypatch.setattr(PageMap, "_pte_mark_not_present", marking)
    monkeypatch.setattr(Proc, "tlb_shootdown", shooting)
    assert f.mapping.remove_contig(0, 1) == 1
    pids = [p.pid for p in procs]
    # As in the seed: when the 11th process finds the batch full, the ten
    # are shot down together; the last two go in the final batch.
    assert events == (
        [f"mark p{pid}" for pid in pids[:11]]
        + [f"shoot p{pid}" for pid in pids[:10]]
        + [f"mark p{pids[11]}"]
        + [f"shoot p{pid}" for pid in pids[10:]]
    )
    # Every process's store reached the file: each D bit was seen.
    f.fsync()
    assert path.read_bytes()[:12] == bytes(range(1, 13))
    for p in procs:
        p.exit()
    assert machine.check_quiescent() == []


def test_dirty_pages_are_written_ten_at_a_time_with_the_map_lock_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine = Machine(cores=2, memory="256KiB", executor="sim", seed=0)
    path = tmp_path / "f"
    path.write_bytes(bytes(25 * PGSIZE))
    f = machine.open(path, "r+")
    for i in range(25):
        f.pwrite(bytes([i + 1]) * 8, i * PGSIZE)
    pm = f.mapping
    log: list[tuple[int, bool]] = []
    write = pm._writeback_page

    def writing(page: Page) -> bool:
        log.append((page.index, pm.lock.held))
        return write(page)

    monkeypatch.setattr(pm, "_writeback_page", writing)
    passes: list[int] = []
    collect = pm._marked_page

    def collecting(index: int) -> Page | None:
        passes.append(len(log))  # how many writes had happened when this was looked at
        return collect(index)

    monkeypatch.setattr(pm, "_marked_page", collecting)
    assert pm.remove_contig(0, 25) == 25
    assert [index for index, _ in log] == list(range(25))
    assert not any(held for _, held in log)  # writepage never runs under the map lock
    # Pages are gathered ten at a time: the 11th is looked at after 10 writes.
    assert passes == [0] * 10 + [10] * 10 + [20] * 5
    data = path.read_bytes()
    assert all(data[i * PGSIZE] == i + 1 for i in range(25))
    assert machine.check_quiescent() == []


def _spy_fused(pm: PageMap, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """What each fused pass freed, as remove_contig runs."""
    freed: list[int] = []
    fused = pm._free_clean_unmapped

    def spying(lo: int, hi: int) -> int:
        freed.append(fused(lo, hi))
        return freed[-1]

    monkeypatch.setattr(pm, "_free_clean_unmapped", spying)
    return freed


def test_clean_unmapped_pages_go_in_one_fused_pass_and_the_rest_by_the_five(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    machine = sim(0, frames=200)
    ops = CountingOps()
    pm = machine.page_map(ops)
    for i in range(150):  # three leaves' worth, and a bit
        pm.put_page(pm.load_page(i))
    dirty = pm.load_page(70)
    dirty.data[:8] = b"new data"
    dirty.flags.fetch_or(PG_DIRTY)
    pm.put_page(dirty)
    held = pm.load_page(140)
    freed = _spy_fused(pm, monkeypatch)
    frees = machine.allocator.frees
    assert pm.remove_contig(0, 150) == 149
    # The clean ones in the fused pass; the dirty one written back and freed
    # by the five passes; the referenced one kept.
    assert freed == [148] and ops.writes == [70]
    assert ops.store[70][:8] == b"new data" and ops.store[70][8:] == page_bytes(70)[8:]
    assert machine.allocator.frees == frees + 149
    assert pm.nr_pages == 1 and pm.tree.lookup(140) == held.ppn
    assert pm.tree.nr_nodes == 2  # the root and page 140's leaf: emptied leaves pruned
    pm.put_page(held)
    assert machine.check_quiescent() == []


def test_a_mapped_range_takes_the_five_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine = Machine(cores=2, memory="256KiB", executor="sim", seed=0)
    path = tmp_path / "f"
    path.write_bytes(bytes(8 * PGSIZE))
    f = machine.open(path, "r+")
    for i in range(8):
        f.pread(1, i * PGSIZE)
    proc = machine.process()
    base = proc.mmap(PGSIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f, 7 * PGSIZE)
    proc.store(base, b"x")
    freed = _spy_fused(f.mapping, monkeypatch)
    assert f.mapping.remove_contig(0, 4) == 4  # no region maps pages 0-3
    assert f.mapping.remove_contig(0, 8) == 4  # page 7 is mapped: all by the five passes
    assert freed == [4]
    assert path.read_bytes()[7 * PGSIZE] == ord("x")
    assert machine.check_quiescent() == []
