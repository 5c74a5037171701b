"""remove_contig's batching, as in the seed: shootdowns for at most
PTR_ARR_LEN (10) processes at a time, and dirty pages written back at most
PTR_ARR_LEN at a time with the map lock dropped."""

from __future__ import annotations

from pathlib import Path

import pytest

from pagemap import MAP_SHARED, PGSIZE, PROT_READ, PROT_WRITE, Machine, Page, PageMap
from pagemap.kernel import removal as pagemap_module
from pagemap.kernel.proc import Proc
from pagemap.sync.atomic import AtomicWord


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
