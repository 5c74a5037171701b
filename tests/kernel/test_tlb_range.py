"""Ranged TLB flushes (issue 21): each caller flushes the pages it changed,
and an entry outside them survives on every core; exit flushes everything."""

from __future__ import annotations

from pathlib import Path

from pagemap import MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PGSIZE, PROT_READ, Machine, Proc
from pagemap.kernel.mman import PROT_RW


def _machine() -> Machine:
    # D bits: what msync takes, and flushes the range of, is the point here.
    return Machine(cores=2, memory=32 * PGSIZE, executor="sim", seed=0, dirty_tracking="dbit")


def _touch(m: Machine, proc: Proc, addrs: list[int]) -> None:
    """Store through every address on core 1, so core 1's TLB caches them."""

    def toucher() -> None:
        for a in addrs:
            proc.store(a, b"x")

    m.spawn(toucher, core=1)
    m.run()


def _cached(m: Machine, proc: Proc) -> set[int]:
    """The pages (addresses) core 1's TLB holds for `proc`."""
    return {vpn * PGSIZE for core, vpn, _ in m.mmu.cached_ppns(proc.pid) if core == 1}


def test_mprotect_and_munmap_flush_their_range_and_nothing_else() -> None:
    m = _machine()
    p = m.process()
    base = p.mmap(4 * PGSIZE, PROT_RW, MAP_PRIVATE | MAP_ANONYMOUS)
    pages = [base + i * PGSIZE for i in range(4)]
    _touch(m, p, pages)
    assert _cached(m, p) == set(pages)
    p.mprotect(pages[1], PGSIZE, PROT_READ)
    assert _cached(m, p) == {pages[0], pages[2], pages[3]}
    p.munmap(pages[2], PGSIZE)
    assert _cached(m, p) == {pages[0], pages[3]}
    p.exit()  # the whole address space
    assert _cached(m, p) == set()


def test_msync_flushes_the_range_whose_d_bits_it_took(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(bytes(4 * PGSIZE))
    m = _machine()
    f = m.open(path)
    p = m.process()
    base = p.mmap(4 * PGSIZE, PROT_RW, MAP_SHARED, f)
    pages = [base + i * PGSIZE for i in range(4)]
    _touch(m, p, pages)
    p.msync(pages[0], 2 * PGSIZE)
    assert _cached(m, p) == {pages[2], pages[3]}
    assert path.read_bytes()[: 2 * PGSIZE : PGSIZE] == b"xx"


def test_truncate_flushes_the_range_it_unmapped_in_each_process(tmp_path: Path) -> None:
    """As Linux's unmap_mapping_range flushes each region's range: an entry for
    the page before the new end survives."""
    path = tmp_path / "f"
    path.write_bytes(bytes(3 * PGSIZE))
    m = _machine()
    f = m.open(path)
    p = m.process()
    base = p.mmap(3 * PGSIZE, PROT_RW, MAP_SHARED, f)
    pages = [base + i * PGSIZE for i in range(3)]
    _touch(m, p, pages)
    f.truncate(PGSIZE)
    assert _cached(m, p) == {pages[0]}


def test_the_seeds_remove_contig_still_flushes_the_whole_address_space(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(bytes(3 * PGSIZE))
    m = _machine()
    f = m.open(path)
    p = m.process()
    base = p.mmap(3 * PGSIZE, PROT_RW, MAP_SHARED, f)
    anon = p.mmap(PGSIZE, PROT_RW, MAP_PRIVATE | MAP_ANONYMOUS)
    _touch(m, p, [base, anon])
    assert f.mapping.remove_contig(0, 1) == 1
    assert _cached(m, p) == set()  # the anonymous page's entry went too


def test_reclaim_defers_its_flush_to_before_the_free_and_mprotect_flushes_what_is_pending(
    tmp_path: Path,
) -> None:
    """TTU_BATCH_FLUSH: reclaim's removal leaves the process marked
    tlb_flush_batched; its TLBs are flushed (whole) before the page is freed;
    the next mprotect flushes once more and clears the mark
    (flush_tlb_batched_pending)."""
    path = tmp_path / "f"
    path.write_bytes(bytes(2 * PGSIZE))
    m = _machine()
    f = m.open(path)
    p = m.process()
    base = p.mmap(2 * PGSIZE, PROT_RW, MAP_SHARED, f)
    anon = p.mmap(PGSIZE, PROT_RW, MAP_PRIVATE | MAP_ANONYMOUS)
    _touch(m, p, [base, base + PGSIZE, anon])
    ppn = f.mapping.tree.lookup(0)
    shots = m.mmu.shootdowns.value
    assert f.mapping.remove_pages({0: ppn}) == 1
    assert m.mmu.shootdowns.value == shots + 1  # once, for the batch
    assert p.tlb_flush_batched and _cached(m, p) == set()
    p.mprotect(base + PGSIZE, PGSIZE, PROT_READ)
    assert not p.tlb_flush_batched
    assert m.mmu.shootdowns.value == shots + 3  # the pending flush, then mprotect's own
    assert p.load(base, 1) == b"x"  # written back before it was freed
