"""Processes and mappings (kernel/mm.py), one behaviour at a time: VMRs split
and merged, mmap/munmap/mprotect/msync, the page-fault handler, anonymous
memory, MAP_LOCKED, and truncate under a mapping."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from pagemap import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_LOCKED,
    MAP_PRIVATE,
    MAP_SHARED,
    PG_DIRTY,
    PGSIZE,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    BusError,
    File,
    Machine,
    Proc,
    SegmentationFault,
)
from pagemap.hw.mmu import PTE_D, PTE_P, PTE_U, PTE_W, make_pte, pte_ppn
from pagemap.kernel.hostfs import HostFile
from pagemap.kernel.mm import MMAP_BASE
from pagemap.kernel.pagemap import PageMap

collect_mapped_dirty = PageMap.collect_mapped_dirty
drop_private_copies = PageMap.drop_private_copies

RW = PROT_READ | PROT_WRITE
NPAGES = 8


def pattern(index: int) -> bytes:
    """Page `index` of the test file: its number, over and over."""
    return bytes([index + 1]) * PGSIZE


@pytest.fixture
def machine() -> Machine:
    return Machine(cores=2, memory=(32 + 1) * PGSIZE, executor="sim", seed=0)


@pytest.fixture
def file(machine: Machine, tmp_path: Path) -> HostFile:
    path = tmp_path / "data.bin"
    path.write_bytes(b"".join(pattern(i) for i in range(NPAGES)))
    return machine.open(path, "r+")


def host_bytes(f: File) -> bytes:
    return Path(f.path).read_bytes()


def vmr_spans(p: Proc) -> list[tuple[int, int, int, int]]:
    """(base, end, prot, foff) of each VMR, relative to MMAP_BASE."""
    return [(v.base - MMAP_BASE, v.end - MMAP_BASE, v.prot, v.foff) for v in p.vmrs]


def pte_of(p: Proc, va: int) -> int:
    word = p.page_table.lookup(va >> 12)
    return word.value if word is not None else 0


def no_locks_held(p: Proc) -> bool:
    return not p.vmr_lock.held and not p.pte_lock.held


# -- anonymous memory --------------------------------------------------------------


def test_anonymous_memory_reads_as_zeros_and_keeps_what_is_stored(machine: Machine) -> None:
    p = machine.process()
    a = p.mmap(3 * PGSIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    assert a % PGSIZE == 0 and a >= MMAP_BASE
    assert p.load(a, 3 * PGSIZE) == bytes(3 * PGSIZE)
    p.store(a + PGSIZE - 2, b"spans")  # across a page boundary
    assert p.load(a + PGSIZE - 3, 7) == b"\0spans\0"
    assert len(p.anon) == 3


def test_anonymous_pages_are_freed_by_munmap_and_exit(machine: Machine) -> None:
    p = machine.process()
    before = machine.allocator.nr_used
    a = p.mmap(4 * PGSIZE, RW, MAP_SHARED | MAP_ANONYMOUS)
    p.store(a, b"x" * (4 * PGSIZE))
    assert machine.allocator.nr_used == before + 4
    p.munmap(a + PGSIZE, PGSIZE)
    assert machine.allocator.nr_used == before + 3
    p.exit()
    assert machine.allocator.nr_used == before
    assert p.vmrs == [] and p.anon == {}


def test_two_processes_do_not_share_anonymous_memory(machine: Machine) -> None:
    p, q = machine.process(), machine.process()
    a = p.mmap(PGSIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    b = q.mmap(PGSIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    assert a == b  # separate address spaces
    p.store(a, b"mine")
    assert q.load(b, 4) == bytes(4)


def test_mmap_places_regions_apart_honours_free_hints_and_map_fixed_replaces(
    machine: Machine,
) -> None:
    p = machine.process()
    a = p.mmap(2 * PGSIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    b = p.mmap(PGSIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    assert b >= a + 2 * PGSIZE
    hint = 0x7000_0000
    assert p.mmap(PGSIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS, addr=hint) == hint
    taken = p.mmap(PGSIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS, addr=a)
    assert taken != a  # a hint over a mapping is only a hint
    p.store(a, b"old")
    assert p.mmap(PGSIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, addr=a) == a
    assert p.load(a, 3) == bytes(3)  # the old page is gone


# -- VMRs split and merged ----------------------------------------------------------


def test_munmap_in_the_middle_splits_a_region_keeping_offsets(
    machine: Machine, file: HostFile
) -> None:
    p = machine.process()
    a = p.mmap(6 * PGSIZE, PROT_READ, MAP_SHARED, file, PGSIZE)
    p.munmap(a + 2 * PGSIZE, 2 * PGSIZE)
    base = a - MMAP_BASE
    assert vmr_spans(p) == [
        (base, base + 2 * PGSIZE, PROT_READ, PGSIZE),
        (base + 4 * PGSIZE, base + 6 * PGSIZE, PROT_READ, 5 * PGSIZE),
    ]
    assert p.load(a + 5 * PGSIZE, 1) == pattern(6)[:1]
    assert sorted(v.base for v in file.mapping.vmrs) == [a, a + 4 * PGSIZE]
    with pytest.raises(SegmentationFault):
        p.load(a + 2 * PGSIZE, 1)


def test_mprotect_splits_and_restoring_the_protection_merges_again(
    machine: Machine, file: HostFile
) -> None:
    p = machine.process()
    a = p.mmap(4 * PGSIZE, RW, MAP_SHARED, file)
    p.mprotect(a + PGSIZE, PGSIZE, PROT_READ)
    assert [s[2] for s in vmr_spans(p)] == [RW, PROT_READ, RW]
    p.mprotect(a + PGSIZE, PGSIZE, RW)
    assert vmr_spans(p) == [(a - MMAP_BASE, a - MMAP_BASE + 4 * PGSIZE, RW, 0)]
    assert len(file.mapping.vmrs) == 1


def test_adjacent_compatible_mappings_merge_and_incompatible_ones_do_not(
    machine: Machine, file: HostFile
) -> None:
    p = machine.process()
    a = p.mmap(2 * PGSIZE, RW, MAP_SHARED, file, 0, addr=MMAP_BASE)
    p.mmap(2 * PGSIZE, RW, MAP_SHARED, file, 2 * PGSIZE, addr=a + 2 * PGSIZE)
    assert len(p.vmrs) == 1 and p.vmrs[0].end == a + 4 * PGSIZE
    p.mmap(PGSIZE, RW, MAP_SHARED, file, 0, addr=a + 4 * PGSIZE)  # file offset not contiguous
    p.mmap(PGSIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS, addr=a + 5 * PGSIZE)
    assert len(p.vmrs) == 3


# -- faults ---------------------------------------------------------------------------


def test_shared_mappings_see_the_file_and_each_others_stores(
    machine: Machine, file: HostFile
) -> None:
    p, q = machine.process(), machine.process()
    a = p.mmap(4 * PGSIZE, RW, MAP_SHARED, file)
    b = q.mmap(2 * PGSIZE, RW, MAP_SHARED, file, 2 * PGSIZE)
    assert p.load(a + 2 * PGSIZE, 4) == pattern(2)[:4]
    q.store(b + 10, b"from q")
    assert p.load(a + 2 * PGSIZE + 10, 6) == b"from q"
    assert file.pread(6, 2 * PGSIZE + 10) == b"from q"
    file.pwrite(b"from pwrite", 3 * PGSIZE)
    assert q.load(b + PGSIZE, 11) == b"from pwrite"


def test_a_store_marks_the_pte_dirty_and_munmap_passes_it_to_the_page(tmp_path: Path) -> None:
    # D-bit tracking: under "wp" the first store dirties the page itself
    # (tests/kernel/test_wp.py).
    machine = Machine(cores=2, memory=(32 + 1) * PGSIZE, executor="sim", dirty_tracking="dbit")
    path = tmp_path / "data.bin"
    path.write_bytes(b"".join(pattern(i) for i in range(NPAGES)))
    file = machine.open(path, "r+")
    p = machine.process()
    a = p.mmap(2 * PGSIZE, RW, MAP_SHARED, file)
    p.store(a + PGSIZE, b"dirty")
    pte = pte_of(p, a + PGSIZE)
    page = machine.allocator.pages[pte_ppn(pte)]
    assert pte & PTE_D and not page.flags.value & PG_DIRTY
    p.munmap(a, 2 * PGSIZE)
    assert page.flags.value & PG_DIRTY
    assert pte_of(p, a + PGSIZE) == 0
    assert file.mapping.remove_contig(0, NPAGES) == 1
    assert host_bytes(file)[PGSIZE : PGSIZE + 5] == b"dirty"


def test_mprotect_read_only_passes_d_to_the_page_and_later_stores_fault(
    machine: Machine, file: HostFile
) -> None:
    p = machine.process()
    a = p.mmap(PGSIZE, RW, MAP_SHARED, file)
    p.store(a, b"before")
    page = machine.allocator.pages[pte_ppn(pte_of(p, a))]
    p.mprotect(a, PGSIZE, PROT_READ)
    assert page.flags.value & PG_DIRTY
    assert not pte_of(p, a) & (PTE_W | PTE_D) and pte_of(p, a) & PTE_P
    with pytest.raises(SegmentationFault) as exc:
        p.store(a, b"after")
    assert exc.value.errno == errno.EPERM and "SIGSEGV" in str(exc.value)
    assert no_locks_held(p)
    file.fsync()
    assert host_bytes(file)[:6] == b"before"


def test_prot_none_unmaps_the_pages_but_keeps_the_data(machine: Machine, file: HostFile) -> None:
    p = machine.process()
    a = p.mmap(PGSIZE, RW, MAP_SHARED, file)
    anon = p.mmap(PGSIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    p.store(a, b"file")
    p.store(anon, b"anon")
    p.mprotect(a, PGSIZE, PROT_NONE)
    p.mprotect(anon, PGSIZE, PROT_NONE)
    assert pte_of(p, a) == 0 and pte_of(p, anon) == 0
    with pytest.raises(SegmentationFault):
        p.load(a, 1)
    p.mprotect(a, PGSIZE, PROT_READ)
    p.mprotect(anon, PGSIZE, PROT_READ)
    assert p.load(a, 4) == b"file" and p.load(anon, 4) == b"anon"


def test_a_private_mapping_copies_on_write_and_the_file_never_sees_it(
    machine: Machine, file: HostFile
) -> None:
    p, q = machine.process(), machine.process()
    a = p.mmap(2 * PGSIZE, RW, MAP_PRIVATE, file)
    b = q.mmap(2 * PGSIZE, PROT_READ, MAP_SHARED, file)
    assert p.load(a, 1) == pattern(0)[:1] == q.load(b, 1)
    cached = pte_ppn(pte_of(p, a))
    assert cached == pte_ppn(pte_of(q, b))  # a read maps the file's own page, read-only
    assert not pte_of(p, a) & PTE_W
    p.store(a + 1, b"private")
    assert pte_ppn(pte_of(p, a)) != cached and pte_of(p, a) & PTE_W
    assert p.load(a, 8) == pattern(0)[:1] + b"private"
    assert q.load(b, 8) == pattern(0)[:8]
    file.pwrite(b"newer", PGSIZE)  # an uncopied private page still sees the file
    file.pwrite(b"newer", 0)
    assert p.load(a + PGSIZE, 5) == b"newer"
    assert p.load(a, 5) == pattern(0)[:1] + b"priv"
    p.munmap(a, 2 * PGSIZE)
    file.fsync()
    assert host_bytes(file)[:5] == b"newer" and host_bytes(file)[5:8] == pattern(0)[:3]


def test_a_private_write_only_mapping_of_a_read_only_file_is_allowed(
    machine: Machine, tmp_path: Path
) -> None:
    path = tmp_path / "ro.bin"
    path.write_bytes(pattern(0))
    ro = machine.open(path, "r")
    p = machine.process()
    a = p.mmap(PGSIZE, RW, MAP_PRIVATE, ro)
    p.store(a, b"ok")
    assert p.load(a, 2) == b"ok" and path.read_bytes() == pattern(0)


def test_the_fault_handler_keeps_a_d_bit_left_in_a_not_present_pte(
    machine: Machine, file: HostFile
) -> None:
    """Removal's first pass leaves D in a PTE it makes not present.  Its map
    lock keeps faults away until the third pass zeroes that PTE, but the
    handler does not lean on that: it keeps any D bit it finds."""
    p = machine.process()
    a = p.mmap(PGSIZE, RW, MAP_SHARED, file)
    p.store(a, b"x")
    word = p.page_table.lookup(a >> 12)
    assert word is not None
    word.fetch_and(~PTE_P)  # as removal's first pass leaves it
    p.tlb_shootdown()
    p.load(a, 1)
    assert word.value & PTE_P and word.value & PTE_D


def test_a_spurious_fault_returns_without_loading_anything(
    machine: Machine, file: HostFile
) -> None:
    p = machine.process()
    a = p.mmap(PGSIZE, RW, MAP_SHARED, file)
    p.store(a, b"x")
    before = pte_of(p, a)
    loads = file.mapping.stats.misses + file.mapping.stats.hits
    p.handle_page_fault(a, True)
    assert pte_of(p, a) == before
    assert file.mapping.stats.misses + file.mapping.stats.hits == loads


def test_a_fault_reinstalls_a_pte_with_the_same_frame_and_missing_permission(
    machine: Machine, file: HostFile
) -> None:
    p = machine.process()
    a = p.mmap(PGSIZE, RW, MAP_SHARED, file)
    p.load(a, 1)
    ppn = pte_ppn(pte_of(p, a))
    word = p.page_table.lookup(a >> 12)
    assert word is not None
    word.store(make_pte(ppn, PTE_P | PTE_U))  # as if a write-protect had raced
    p.tlb_shootdown()
    p.store(a, b"w")
    assert pte_ppn(pte_of(p, a)) == ppn and pte_of(p, a) & PTE_W


def test_errors_from_load_page_reach_the_access_with_nothing_held(
    machine: Machine, file: HostFile
) -> None:
    p = machine.process()
    a = p.mmap(PGSIZE, PROT_READ, MAP_SHARED, file, 5 * PGSIZE)
    file.faults.fail("read")
    with pytest.raises(OSError) as exc:
        p.load(a, 1)
    assert exc.value.errno == errno.EIO
    assert no_locks_held(p) and machine.check_quiescent() == []
    assert p.load(a, 1) == pattern(5)[:1]


# -- msync --------------------------------------------------------------------------------


def test_msync_writes_back_without_evicting_and_catches_later_stores(
    machine: Machine, file: HostFile
) -> None:
    p = machine.process()
    a = p.mmap(4 * PGSIZE, RW, MAP_SHARED, file)
    p.store(a + PGSIZE, b"one")
    cached = file.mapping.nr_pages
    p.msync(a, 4 * PGSIZE)
    assert host_bytes(file)[PGSIZE : PGSIZE + 3] == b"one"
    assert file.mapping.nr_pages == cached
    assert not pte_of(p, a + PGSIZE) & PTE_D
    p.store(a + PGSIZE, b"two")  # must set D again through a fresh walk
    assert pte_of(p, a + PGSIZE) & PTE_D
    p.msync(a + PGSIZE, 1)
    assert host_bytes(file)[PGSIZE : PGSIZE + 3] == b"two"


def test_msync_makes_what_it_wrote_durable_with_a_host_fsync(
    machine: Machine, file: HostFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MS_SYNC: the bytes reach the host's disk, not just its page cache, as
    Linux's msync reaches the disk through vfs_fsync_range: a host fsync of
    the file after the pwrite that wrote them, and none for a range with
    nothing shared in it."""
    calls: list[tuple[str, int]] = []
    real_pwrite, real_fsync = os.pwrite, os.fsync

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        calls.append(("pwrite", fd))
        return real_pwrite(fd, data, offset)

    def fsync(fd: int) -> None:
        calls.append(("fsync", fd))
        real_fsync(fd)

    monkeypatch.setattr("pagemap.kernel.hostio.os.pwrite", pwrite)
    monkeypatch.setattr("pagemap.kernel.hostio.os.fsync", fsync)
    fd = file.inode.io.fd
    p = machine.process()
    a = p.mmap(2 * PGSIZE, RW, MAP_SHARED, file)
    b = p.mmap(PGSIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS, addr=a + 2 * PGSIZE)
    p.store(a + PGSIZE, b"durable")
    p.msync(a, 2 * PGSIZE)
    assert calls == [("pwrite", fd), ("fsync", fd)]
    calls.clear()
    p.msync(b, PGSIZE)  # anonymous memory: nothing of a file to make durable
    assert calls == []


def test_msync_whose_writeback_fails_does_not_sync_and_keeps_the_page_dirty(
    machine: Machine, file: HostFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed write is msync's error (EIO), with no fsync claiming the
    bytes durable; the page stays dirty and the next msync writes and syncs."""
    fsyncs: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        fsyncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr("pagemap.kernel.hostio.os.fsync", fsync)
    p = machine.process()
    a = p.mmap(PGSIZE, RW, MAP_SHARED, file)
    p.store(a, b"retry")
    file.faults.fail("write")
    with pytest.raises(OSError) as exc:
        p.msync(a, PGSIZE)
    assert exc.value.errno == errno.EIO
    assert fsyncs == [] and no_locks_held(p)
    p.msync(a, PGSIZE)
    assert fsyncs == [file.inode.io.fd]
    assert host_bytes(file)[:5] == b"retry"


def test_msync_ignores_private_and_anonymous_memory(machine: Machine, file: HostFile) -> None:
    p = machine.process()
    a = p.mmap(PGSIZE, RW, MAP_PRIVATE, file)
    b = p.mmap(PGSIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS, addr=a + PGSIZE)
    p.store(a, b"private")
    p.store(b, b"anon")
    p.msync(a, 2 * PGSIZE)
    assert host_bytes(file)[:PGSIZE] == pattern(0)


def test_fsync_after_collect_mapped_dirty_sees_mapped_stores(
    machine: Machine, file: HostFile
) -> None:
    p = machine.process()
    a = p.mmap(2 * PGSIZE, RW, MAP_SHARED, file)
    p.store(a + PGSIZE + 7, b"mapped")
    collect_mapped_dirty(file.mapping, 0, NPAGES)
    file.fsync()
    assert host_bytes(file)[PGSIZE + 7 : PGSIZE + 13] == b"mapped"


# -- MAP_LOCKED -------------------------------------------------------------------------------


def test_map_locked_populates_now_and_removal_leaves_the_pages(
    machine: Machine, file: HostFile
) -> None:
    p = machine.process()
    a = p.mmap(3 * PGSIZE, RW, MAP_SHARED | MAP_LOCKED, file, PGSIZE)
    assert file.mapping.nr_pages == 3
    ppns = [pte_ppn(pte_of(p, a + i * PGSIZE)) for i in range(3)]
    assert all(ppns)
    p.store(a, b"pinned")
    assert file.mapping.remove_contig(0, NPAGES) == 0
    assert [pte_ppn(pte_of(p, a + i * PGSIZE)) for i in range(3)] == ppns
    p.munmap(a, 3 * PGSIZE)
    assert file.mapping.remove_contig(0, NPAGES) == 3
    assert host_bytes(file)[PGSIZE : PGSIZE + 6] == b"pinned"


def test_map_locked_private_writable_pages_get_their_copies_up_front(
    machine: Machine, file: HostFile
) -> None:
    p = machine.process()
    a = p.mmap(2 * PGSIZE, RW, MAP_PRIVATE | MAP_LOCKED, file)
    assert len(p.anon) == 2
    assert p.load(a + PGSIZE, 2) == pattern(1)[:2]


@pytest.mark.parametrize("before", [PROT_READ, PROT_NONE])
def test_mprotect_writable_of_a_locked_private_mapping_copies_its_pages_then(
    machine: Machine, file: HostFile, before: int
) -> None:
    """As Linux's mprotect_fixup (a private VM_LOCKED region becoming
    writable is populated for writing): every page gets its private copy at
    mprotect, so a later store does not fault, and a later pwrite of the
    file is no longer seen through the mapping."""
    p = machine.process()
    a = p.mmap(3 * PGSIZE, before, MAP_PRIVATE | MAP_LOCKED, file)
    assert p.anon == {}
    p.mprotect(a, 2 * PGSIZE, RW)  # the third page stays as it was
    assert sorted(p.anon) == [a >> 12, (a >> 12) + 1]
    assert all(pte_of(p, a + i * PGSIZE) & PTE_W for i in range(2))
    faults = int(p.faults)
    p.store(a + PGSIZE, b"private")
    assert int(p.faults) == faults
    file.pwrite(b"newer", 0)
    assert p.load(a, 5) == pattern(0)[:5]
    file.fsync()
    assert host_bytes(file)[PGSIZE : 2 * PGSIZE] == pattern(1)
    assert host_bytes(file)[:5] == b"newer"
    assert machine.check_quiescent() == []


def test_mprotect_that_fails_at_a_hole_still_copies_the_locked_region_it_changed(
    machine: Machine, file: HostFile
) -> None:
    """Linux populates each region as it changes it, so the region before
    the hole is writable and copied when ENOMEM comes back."""
    p = machine.process()
    a = p.mmap(PGSIZE, PROT_READ, MAP_PRIVATE | MAP_LOCKED, file)
    with pytest.raises(OSError) as exc:
        p.mprotect(a, 2 * PGSIZE, RW)
    assert exc.value.errno == errno.ENOMEM and no_locks_held(p)
    assert p.vmrs[0].prot == RW and sorted(p.anon) == [a >> 12]


def test_mprotect_writable_copies_nothing_for_shared_or_unlocked_mappings(
    machine: Machine, file: HostFile
) -> None:
    p = machine.process()
    shared = p.mmap(PGSIZE, PROT_READ, MAP_SHARED | MAP_LOCKED, file)
    unlocked = p.mmap(PGSIZE, PROT_READ, MAP_PRIVATE, file)
    p.load(unlocked, 1)
    p.mprotect(shared, PGSIZE, RW)
    p.mprotect(unlocked, PGSIZE, RW)
    assert p.anon == {}


def test_map_locked_stops_populating_at_the_end_of_the_file(
    machine: Machine, file: HostFile
) -> None:
    p = machine.process()
    p.mmap(4 * PGSIZE, PROT_READ, MAP_SHARED | MAP_LOCKED, file, 6 * PGSIZE)
    assert file.mapping.nr_pages == 2


# -- the end of the file ---------------------------------------------------------------------


def test_an_access_past_the_end_of_the_file_is_a_bus_error(
    machine: Machine, file: HostFile
) -> None:
    p = machine.process()
    a = p.mmap(NPAGES * PGSIZE + PGSIZE, RW, MAP_SHARED, file)
    with pytest.raises(BusError) as exc:
        p.load(a + NPAGES * PGSIZE, 1)
    assert "SIGBUS" in str(exc.value) and exc.value.errno == errno.EFAULT
    assert no_locks_held(p)


def test_truncate_under_a_mapping_unmaps_and_later_accesses_are_bus_errors(
    machine: Machine, file: HostFile
) -> None:
    p = machine.process()
    a = p.mmap(NPAGES * PGSIZE, RW, MAP_SHARED, file)
    for i in range(NPAGES):
        p.store(a + i * PGSIZE, b"s")
    file.truncate(2 * PGSIZE + 100)
    assert all(pte_of(p, a + i * PGSIZE) == 0 for i in range(3, NPAGES))
    assert file.mapping.nr_pages == 3
    with pytest.raises(BusError):
        p.load(a + 3 * PGSIZE, 1)
    with pytest.raises(BusError):
        p.store(a + 7 * PGSIZE, b"x")
    assert p.load(a + 2 * PGSIZE, 2) == b"s" + pattern(2)[:1]
    assert p.load(a + 2 * PGSIZE + 100, 4) == bytes(4)  # zeroed past the new end
    p.munmap(a, NPAGES * PGSIZE)
    file.fsync()
    assert len(host_bytes(file)) == 2 * PGSIZE + 100


def test_truncate_drops_private_copies_past_the_end_as_linux_does(
    machine: Machine, file: HostFile
) -> None:
    p = machine.process()
    a = p.mmap(4 * PGSIZE, RW, MAP_PRIVATE, file)
    p.store(a + 3 * PGSIZE, b"copy")
    p.store(a + PGSIZE, b"kept")
    assert len(p.anon) == 2
    file.truncate(2 * PGSIZE)
    assert list(p.anon) == [(a + PGSIZE) >> 12]
    with pytest.raises(BusError):
        p.load(a + 3 * PGSIZE, 1)
    assert p.load(a + PGSIZE, 4) == b"kept"
    drop_private_copies(file.mapping, 1)  # what truncate calls, here by hand
    assert p.anon == {}
    assert p.load(a + PGSIZE, 4) == pattern(1)[:4]


def test_growing_the_file_makes_the_pages_accessible_again(
    machine: Machine, file: HostFile
) -> None:
    p = machine.process()
    a = p.mmap(NPAGES * PGSIZE, RW, MAP_SHARED, file)
    file.truncate(PGSIZE)
    with pytest.raises(BusError):
        p.load(a + 4 * PGSIZE, 1)
    file.truncate(NPAGES * PGSIZE)
    assert p.load(a + 4 * PGSIZE, 8) == bytes(8)


def test_the_quiescence_check_names_ptes_and_tlb_entries_to_free_frames(
    machine: Machine, file: HostFile
) -> None:
    p = machine.process()
    a = p.mmap(PGSIZE, PROT_READ, MAP_SHARED, file)
    p.load(a, 1)
    assert machine.check_quiescent() == []
    free = machine.allocator.pages[machine.allocator.nr_frames - 1]
    assert machine.allocator.is_free(free.ppn)
    word = p.page_table.lookup(a >> 12)
    assert word is not None
    word.store(make_pte(free.ppn, PTE_P | PTE_U))  # by hand: what removal must never leave
    machine.mmu.tlbs[1].fill(p.pid, a >> 12, word.value)
    problems = machine.check_quiescent()
    assert len(problems) == 2 and all(f"free frame {free.ppn}" in m for m in problems)


def test_faults_are_counted_minor_or_major_and_shootdowns_are_counted(
    machine: Machine, file: HostFile
) -> None:
    p = machine.process()
    a = p.mmap(2 * PGSIZE, PROT_READ, MAP_SHARED, file)
    p.load(a, 1)  # read in: major
    p.load(a, 1)  # a TLB hit: no fault
    shootdowns = machine.mmu.shootdowns.value
    p.munmap(a, 2 * PGSIZE)
    assert machine.mmu.shootdowns.value == shootdowns + 1
    b = p.mmap(2 * PGSIZE, PROT_READ, MAP_SHARED, file)
    p.load(b, 1)  # cached, no PTE: minor
    anon = p.mmap(PGSIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    p.store(anon, b"z")  # zero fill: minor
    assert machine.mm_counters()["page_faults_major"] == 1
    assert machine.mm_counters()["page_faults_minor"] == 2
