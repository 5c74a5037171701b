"""Direct reclaim: allocations free frames in their own task, flusher or not."""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pagemap import (
    MAP_LOCKED,
    MAP_SHARED,
    PG_DIRTY,
    PGSIZE,
    PROT_READ,
    PROT_WRITE,
    Machine,
    OutOfMemory,
    Page,
)
from pagemap.hw.mmu import PTE_A
from pagemap.kernel.policy import POLICIES
from pagemap.kernel.reclaim import BATCH
from tests.conftest import SIM_SEEDS, CountingOps, page_bytes, sim

FILE_PAGES = 6


@st.composite
def file_ops(draw: st.DrawFn) -> list[tuple[str, int, int]]:
    size = FILE_PAGES * PGSIZE
    kinds = st.sampled_from(["pread", "pwrite", "truncate", "fsync"])
    ops = []
    for _ in range(60):
        kind = draw(kinds)
        ops.append((kind, draw(st.integers(0, size)), draw(st.integers(0, 2 * PGSIZE))))
    return ops


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=file_ops(), seed=st.integers(0, 1 << 16), executor=st.sampled_from(["threads", "sim"]))
def test_six_frames_and_no_flusher_behave_as_a_host_file(
    tmp_path: Path, ops: list[tuple[str, int, int]], seed: int, executor: str
) -> None:
    """Reads never stop short while clean pages could be dropped: with six
    frames and no flusher, a 6-page file reads and writes as a host file."""
    rng = random.Random(seed)
    start = rng.randbytes(FILE_PAGES * PGSIZE)
    ours, theirs = tmp_path / f"ours{seed}", tmp_path / f"theirs{seed}"
    ours.write_bytes(start)
    theirs.write_bytes(start)
    machine = Machine(cores=1, memory=7 * PGSIZE, executor=executor, seed=seed)
    f = machine.open(ours, "r+")
    fd = os.open(theirs, os.O_RDWR)
    try:
        for kind, offset, n in ops:
            if kind == "pread":
                assert f.pread(n, offset) == os.pread(fd, n, offset), (kind, offset, n)
            elif kind == "pwrite":
                data = rng.randbytes(n)
                assert f.pwrite(data, offset) == os.pwrite(fd, data, offset)
            elif kind == "truncate":
                f.truncate(offset)
                os.ftruncate(fd, offset)
            else:
                f.fsync()
            assert f.size == os.fstat(fd).st_size
        f.fsync()
    finally:
        os.close(fd)
    assert ours.read_bytes() == theirs.read_bytes()
    assert machine.check_quiescent() == []


def test_no_spurious_oom_with_a_concurrent_remover() -> None:
    """8 frames, two writers holding one page each at most, and a user's
    remove_contig over the file in a loop: every allocation is served."""
    reclaimed = waited = 0
    for seed in SIM_SEEDS:
        machine = sim(seed, frames=8, cores=3)
        ops = CountingOps()
        pm = machine.page_map(ops)
        versions = [0] * 32
        stop = [0]

        def writer(first: int) -> None:
            rng = random.Random(seed * 2 + first)
            for _ in range(12):
                index = first + 2 * rng.randrange(16)
                page = pm.load_page(index)  # never OutOfMemory: a page can always go
                versions[index] += 1
                page.data[:] = page_bytes(index, versions[index])
                page.flags.fetch_or(PG_DIRTY)
                pm.put_page(page)
            stop[0] += 1

        def remover() -> None:
            while stop[0] < 2:
                pm.remove_contig(0, 32)
                machine.executor.relax()

        machine.spawn(writer, 0)
        machine.spawn(writer, 1)
        machine.spawn(remover)
        machine.run()
        pm.remove_contig(0, 32)
        for index, version in enumerate(versions):
            if version:
                assert ops.store[index] == page_bytes(index, version), f"seed {seed}"
        assert machine.check_quiescent() == [], f"seed {seed}"
        assert machine.allocator.nr_free == 8
        reclaimed += machine.reclaim.stats.reclaimed
        waited += machine.reclaim.stats.direct
    assert reclaimed > len(SIM_SEEDS) and waited > len(SIM_SEEDS) // 2  # the race was run


@pytest.mark.parametrize("executor", ["sim", "threads"])
def test_out_of_memory_when_every_frame_is_held_and_nothing_leaks(executor: str) -> None:
    machine = Machine(cores=1, memory=5 * PGSIZE, executor=executor, seed=0)
    pm = machine.page_map(CountingOps())
    held = [pm.load_page(i) for i in range(4)]
    with pytest.raises(OutOfMemory) as info:
        pm.load_page(4)
    assert info.value.errno == errno.ENOMEM
    assert "none holds a page reclaim may free" in str(info.value)
    assert pm.nr_pages == 4 and machine.reclaim.stats.failed == 1
    for page in held:
        pm.put_page(page)
    pm.put_page(pm.load_page(4))  # now one of them goes
    assert machine.check_quiescent() == []
    assert machine.allocator.nr_free + pm.nr_pages == 4


def test_out_of_memory_when_every_frame_is_mapped_locked(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(bytes(8 * PGSIZE))
    machine = Machine(cores=1, memory=5 * PGSIZE, executor="sim", seed=0)
    f = machine.open(path, "r+")
    p = machine.process()
    p.mmap(4 * PGSIZE, PROT_READ, MAP_SHARED | MAP_LOCKED, f, 0)
    assert f.mapping.nr_pages == 4
    with pytest.raises(OutOfMemory):
        f.pread(1, 5 * PGSIZE)
    assert f.mapping.nr_pages == 4  # not one pinned page went
    p.exit()
    assert f.pread(1, 5 * PGSIZE) == b"\0"  # unpinned, they may go
    assert machine.check_quiescent() == []


@pytest.mark.parametrize("policy", ["clock", "lru2q", "s3fifo"])
def test_an_accessed_bit_keeps_a_page_that_a_policy_would_otherwise_evict(
    tmp_path: Path, policy: str
) -> None:
    """Two pages mapped, one of them used again through the mapping (its A
    bit set by the MMU): reclaim evicts the other, clears the A bit it
    harvested, and shoots the process down so the next use sets it again."""
    path = tmp_path / "f"
    path.write_bytes(bytes(4 * PGSIZE))
    machine = Machine(cores=1, memory=3 * PGSIZE, executor="sim", seed=0, reclaim=policy)
    f = machine.open(path, "r+")
    p = machine.process()
    a = p.mmap(2 * PGSIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0)
    p.load(a, 1)
    p.load(a + PGSIZE, 1)
    # The faults' own A bits do not count: one harvest passes them by.
    machine.reclaim.mutex.down()
    machine.reclaim.shrink(0)
    machine.reclaim.mutex.up()
    machine.reclaim._harvest([f.mapping.tree.lookup(0), f.mapping.tree.lookup(1)])
    shootdowns = machine.mmu.shootdowns.value
    p.load(a + PGSIZE, 1)  # a re-walk after the shootdown: A set on page 1 alone
    pte1 = p.page_table.lookup((a + PGSIZE) >> 12)
    assert pte1 is not None and pte1.value & PTE_A
    f.pread(1, 2 * PGSIZE)  # a third page: one of the two must go
    assert f.mapping.tree.lookup(1) and not f.mapping.tree.lookup(0)
    assert machine.mmu.shootdowns.value > shootdowns
    assert machine.reclaim.stats.referenced >= 1
    p.exit()
    assert machine.check_quiescent() == []


def test_a_vfs_read_marks_the_page_referenced_and_a_miss_does_not(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(bytes(2 * PGSIZE))
    machine = Machine(cores=1, memory=4 * PGSIZE, executor="threads")
    f = machine.open(path, "r")
    f.pread(10, 0)  # the miss: its first use
    page: Page = machine.allocator.pages[f.mapping.tree.lookup(0)]
    assert not page.flags.value & 0x40
    f.pread(10, 0)  # a hit
    assert page.flags.value & 0x40


def test_every_policy_can_drive_reclaim(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(random.Random(1).randbytes(16 * PGSIZE))
    for name in POLICIES:
        machine = Machine(cores=1, memory=5 * PGSIZE, executor="sim", seed=1, reclaim=name)
        f = machine.open(path, "r")
        for _ in range(3):
            assert f.pread(16 * PGSIZE, 0) == path.read_bytes(), name
        assert machine.reclaim.stats.reclaimed > 0 and machine.check_quiescent() == []


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_pinned_pages_first_in_line_do_not_starve_reclaim(tmp_path: Path, policy: str) -> None:
    """The oldest cached pages, a batch's worth, are MAP_LOCKED: removal never
    frees them, so reclaim gives them back to the policy; every policy must
    offer other pages then (fifo would offer the same ones for ever if a
    page it kept went back to the front)."""
    path = tmp_path / "f"
    path.write_bytes(bytes((BATCH + 24) * PGSIZE))
    machine = Machine(cores=1, memory=(BATCH + 9) * PGSIZE, executor="sim", reclaim=policy)
    f = machine.open(path, "r")
    p = machine.process()
    p.mmap(BATCH * PGSIZE, PROT_READ, MAP_SHARED | MAP_LOCKED, f, 0)
    for index in range(BATCH, BATCH + 24):  # 24 more pages through 8 free frames
        assert f.pread(1, index * PGSIZE) == b"\0"
    assert all(f.mapping.tree.lookup(i) for i in range(BATCH))  # the pinned all stay
    assert machine.reclaim.stats.failed == 0 and machine.reclaim.stats.reclaimed >= 16
    p.exit()
    assert machine.check_quiescent() == []


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown replacement policy"):
        Machine(memory="64KiB", reclaim="mru")
