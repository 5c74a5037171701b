"""fork and copy-on-write (kernel/fork.py, kernel/cow.py, kernel/mapcount.py):
parent and child share anonymous pages until one writes; the reverse map
finds the child's mappings; the reuse rule; errors leak nothing."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from pagemap import (
    MAP_ANONYMOUS,
    MAP_LOCKED,
    MAP_PRIVATE,
    MAP_SHARED,
    PGSIZE,
    PROT_NONE,
    PROT_READ,
    BusError,
    Machine,
    Proc,
)
from pagemap.hw.mmu import PTE_P, PTE_W
from pagemap.kernel.errors import KernelError, OutOfMemory
from pagemap.kernel.hostfs import HostFile
from pagemap.kernel.mapcount import mapcount

RW = PROT_READ | 0x2
ANON = MAP_PRIVATE | MAP_ANONYMOUS


@pytest.fixture
def machine() -> Machine:
    return Machine(cores=2, memory=(32 + 1) * PGSIZE, executor="sim", seed=0)


@pytest.fixture
def file(machine: Machine, tmp_path: Path) -> HostFile:
    path = tmp_path / "data.bin"
    path.write_bytes(b"".join(bytes([i + 1]) * PGSIZE for i in range(4)))
    return machine.open(path, "r+")


def pte_of(p: Proc, va: int) -> int:
    word = p.page_table.lookup(va >> 12)
    return word.value if word is not None else 0


def no_locks_held(*procs: Proc) -> bool:
    return all(not p.vmr_lock.held and not p.pte_lock.held for p in procs)


def test_fork_shares_anonymous_pages_write_protected_and_a_write_copies(
    machine: Machine,
) -> None:
    p = machine.process()
    a = p.mmap(2 * PGSIZE, RW, ANON)
    p.store(a, b"before")
    c = p.fork()
    assert c.pid != p.pid and c in machine.procs
    page = p.anon[a >> 12]
    assert c.anon[a >> 12] is page and mapcount(page) == 2
    assert not pte_of(p, a) & PTE_W and not pte_of(c, a) & PTE_W
    assert c.load(a, 6) == b"before"
    used = machine.allocator.nr_used
    c.store(a, b"child!")  # the child copies
    assert machine.allocator.nr_used == used + 1
    assert c.anon[a >> 12] is not page and mapcount(page) == 1
    assert p.load(a, 6) == b"before" and c.load(a, 6) == b"child!"
    p.store(a, b"parent")  # the parent is alone now: it reuses its page
    assert p.anon[a >> 12] is page and machine.allocator.nr_used == used + 1
    assert p.load(a, 6) == b"parent" and c.load(a, 6) == b"child!"
    assert no_locks_held(p, c)
    assert machine.check_quiescent() == []


def test_a_page_faulted_after_fork_is_each_process_own(machine: Machine) -> None:
    p = machine.process()
    a = p.mmap(2 * PGSIZE, RW, ANON)
    c = p.fork()
    p.store(a + PGSIZE, b"p")
    c.store(a + PGSIZE, b"c")
    assert p.load(a + PGSIZE, 1) == b"p" and c.load(a + PGSIZE, 1) == b"c"
    assert p.anon[(a >> 12) + 1] is not c.anon[(a >> 12) + 1]


def test_fork_of_a_fork_counts_three_mappers_and_each_leaves_its_copy(
    machine: Machine,
) -> None:
    p = machine.process()
    a = p.mmap(PGSIZE, RW, ANON)
    p.store(a, b"0")
    c = p.fork()
    g = c.fork()
    page = p.anon[a >> 12]
    assert mapcount(page) == 3 and g.anon[a >> 12] is page
    g.store(a, b"g")
    c.munmap(a, PGSIZE)  # the child leaves without writing
    assert mapcount(page) == 1
    p.store(a, b"p")  # alone: reused in place
    assert p.anon[a >> 12] is page
    assert (p.load(a, 1), g.load(a, 1)) == (b"p", b"g")
    for q in (p, c, g):
        q.exit()
    assert machine.allocator.nr_used == 0


def test_exit_of_both_frees_every_frame_whoever_exits_first(machine: Machine) -> None:
    for first in (0, 1):
        p = machine.process()
        a = p.mmap(3 * PGSIZE, RW, ANON)
        p.store(a, b"x" * 3 * PGSIZE)
        c = p.fork()
        c.store(a + PGSIZE, b"y")
        procs = [p, c] if first == 0 else [c, p]
        procs[0].exit()
        assert machine.allocator.nr_used == 3  # the survivor's three pages
        procs[1].exit()
        assert machine.allocator.nr_used == 0


def test_a_read_fault_on_a_shared_page_maps_it_read_only(machine: Machine) -> None:
    # mprotect(PROT_NONE) and back zaps the PTE but keeps the page: the fault
    # that maps it again must not make a shared page writable.
    p = machine.process()
    a = p.mmap(PGSIZE, RW, ANON)
    p.store(a, b"shared")
    c = p.fork()
    p.mprotect(a, PGSIZE, PROT_NONE)
    p.mprotect(a, PGSIZE, RW)
    assert p.load(a, 6) == b"shared"
    assert pte_of(p, a) & PTE_P and not pte_of(p, a) & PTE_W
    p.store(a, b"mine!!")
    assert c.load(a, 6) == b"shared"


def test_private_file_mapping_after_fork(machine: Machine, file: HostFile) -> None:
    p = machine.process()
    a = p.mmap(2 * PGSIZE, RW, MAP_PRIVATE, file)
    p.store(a, b"copied")  # page 0: the parent's private copy
    c = p.fork()
    assert c.load(a, 6) == b"copied"  # the copy is shared
    assert c.load(a + PGSIZE, 1) == b"\x02"  # page 1 faults in from the cache
    file.pwrite(b"\x09", PGSIZE)  # not copied by anyone: both see the file change
    assert (p.load(a + PGSIZE, 1), c.load(a + PGSIZE, 1)) == (b"\x09", b"\x09")
    c.store(a, b"childs")
    p.store(a + PGSIZE, b"p")
    assert p.load(a, 6) == b"copied" and c.load(a, 6) == b"childs"
    assert c.load(a + PGSIZE, 1) == b"\x09"
    assert file.pread(1, 0) == b"\x01" and file.pread(1, PGSIZE) == b"\x09"


def test_shared_file_mapping_after_fork_is_shared(machine: Machine, file: HostFile) -> None:
    p = machine.process()
    a = p.mmap(PGSIZE, RW, MAP_SHARED, file)
    p.store(a, b"p")
    c = p.fork()
    c.store(a + 1, b"c")
    assert p.load(a, 2) == b"pc" and file.pread(2, 0) == b"pc"


def test_truncate_drops_the_private_copies_of_parent_and_child(
    machine: Machine, file: HostFile
) -> None:
    p = machine.process()
    a = p.mmap(2 * PGSIZE, RW, MAP_PRIVATE, file)
    p.store(a + PGSIZE, b"x")
    c = p.fork()
    c.store(a, b"y")  # the child's own copy of page 0
    file.truncate(PGSIZE)
    for q in (p, c):
        with pytest.raises(BusError):
            q.load(a + PGSIZE, 1)
    assert c.load(a, 1) == b"y" and p.load(a, 1) == b"\x01"
    p.exit()
    c.exit()
    assert machine.check_quiescent() == []


def test_removal_finds_the_childs_ptes_through_the_reverse_map(
    machine: Machine, file: HostFile
) -> None:
    p = machine.process()
    a = p.mmap(PGSIZE, PROT_READ, MAP_SHARED, file)
    c = p.fork()
    assert c.load(a, 1) == b"\x01" and pte_of(c, a) & PTE_P
    file.mapping.remove_contig(0, 1)
    assert not pte_of(c, a) & PTE_P
    assert c.load(a, 1) == b"\x01"  # refaults


def test_a_cow_break_with_no_frame_left_is_enomem_and_leaks_nothing(machine: Machine) -> None:
    p = machine.process()
    a = p.mmap(PGSIZE, RW, ANON)
    p.store(a, b"keep")
    c = p.fork()
    hog = p.mmap(64 * PGSIZE, RW, ANON)
    filled = 0
    with pytest.raises(OutOfMemory):
        for filled in range(64):
            p.store(hog + filled * PGSIZE, b"h")
    used = machine.allocator.nr_used
    with pytest.raises(OutOfMemory) as exc:
        c.store(a, b"lost")
    assert exc.value.errno == errno.ENOMEM
    assert machine.allocator.nr_used == used and no_locks_held(p, c)
    assert c.anon[a >> 12] is p.anon[a >> 12] and mapcount(p.anon[a >> 12]) == 2
    assert c.load(a, 4) == b"keep" and p.load(a, 4) == b"keep"
    p.munmap(hog, 64 * PGSIZE)
    c.store(a, b"mine")
    assert (p.load(a, 4), c.load(a, 4)) == (b"keep", b"mine")


def test_fork_after_exit_is_esrch(machine: Machine) -> None:
    p = machine.process()
    p.exit()
    with pytest.raises(KernelError) as exc:
        p.fork()
    assert exc.value.errno == errno.ESRCH


def test_fork_keeps_the_published_fixes_of_its_parent(machine: Machine) -> None:
    p = machine.process()
    p.foll_cow = False
    assert p.fork().foll_cow is False


def test_reclaim_unmaps_the_childs_ptes_and_a_locked_child_keeps_its_page(
    tmp_path: Path,
) -> None:
    # Five frames: reading the sixteen pages of the file reclaims; the pages
    # the child maps must leave its PTEs as they go, and a page the child
    # locked (MAP_LOCKED through mlock, inherited regions) stays.
    path = tmp_path / "f"
    path.write_bytes(b"".join(bytes([i]) * PGSIZE for i in range(16)))
    machine = Machine(cores=1, memory=6 * PGSIZE, executor="sim", seed=1)
    f = machine.open(path, "r")
    p = machine.process()
    a = p.mmap(2 * PGSIZE, PROT_READ, MAP_SHARED, f)
    c = p.fork()
    assert c.load(a, 1) == b"\x00" and c.load(a + PGSIZE, 1) == b"\x01"
    c.mlock(a + PGSIZE, PGSIZE)
    for _ in range(2):
        assert f.pread(16 * PGSIZE, 0) == path.read_bytes()
    assert machine.reclaim.stats.reclaimed > 0
    assert not pte_of(c, a) & PTE_P  # reclaimed, and unmapped first
    assert pte_of(c, a + PGSIZE) & PTE_P  # locked by the child
    assert machine.check_quiescent() == []
    assert c.load(a, 1) == b"\x00"


def test_shared_anonymous_memory_stays_shared_for_what_was_faulted_before_fork(
    machine: Machine,
) -> None:
    p = machine.process()
    a = p.mmap(2 * PGSIZE, RW, MAP_SHARED | MAP_ANONYMOUS)
    p.store(a, b"s")
    p.mprotect(a + PGSIZE, PGSIZE, PROT_NONE)  # no PTE, no page
    c = p.fork()
    c.store(a, b"c")
    assert p.load(a, 1) == b"c" and pte_of(p, a) & PTE_W


def test_a_page_whose_pte_prot_none_zapped_is_shared_without_a_pte(machine: Machine) -> None:
    p = machine.process()
    a = p.mmap(PGSIZE, RW, ANON)
    p.store(a, b"z")
    p.mprotect(a, PGSIZE, PROT_NONE)
    c = p.fork()
    assert not pte_of(c, a) & PTE_P and c.anon[a >> 12] is p.anon[a >> 12]
    c.mprotect(a, PGSIZE, RW)
    assert c.load(a, 1) == b"z"
    c.store(a, b"c")
    p.mprotect(a, PGSIZE, RW)
    assert p.load(a, 1) == b"z"


def test_a_proc_not_made_by_a_machine_cannot_fork(machine: Machine) -> None:
    lone = Proc(99, machine.executor, machine.allocator, machine.mmu, lambda: 0)
    with pytest.raises(KernelError) as exc:
        lone.fork()
    assert exc.value.errno == errno.EINVAL


def test_memory_locks_are_not_inherited(machine: Machine) -> None:
    p = machine.process()
    p.mmap(PGSIZE, RW, ANON | MAP_LOCKED)
    c = p.fork()
    assert p.vmrs[0].flags & MAP_LOCKED and not c.vmrs[0].flags & MAP_LOCKED
