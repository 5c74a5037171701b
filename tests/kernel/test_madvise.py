"""madvise, mlock and munlock (kernel/madvise.py): what each advice does, and
Linux's errors, each leaving what Linux leaves."""

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
    PROT_READ,
    Machine,
    Proc,
)
from pagemap.hw.mmu import PTE_P
from pagemap.kernel.errors import KernelError
from pagemap.kernel.hostfs import HostFile
from pagemap.kernel.madvise import (
    MADV_DONTNEED,
    MADV_NORMAL,
    MADV_REMOVE,
    MADV_SEQUENTIAL,
    MADV_WILLNEED,
)
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


def present(p: Proc, va: int) -> bool:
    word = p.page_table.lookup(va >> 12)
    return word is not None and bool(word.value & PTE_P)


def errno_of(call: object, *args: object) -> int:
    with pytest.raises(KernelError) as exc:
        call(*args)  # type: ignore[operator]
    assert exc.value.errno is not None
    return exc.value.errno


def test_dontneed_drops_anonymous_pages_and_they_refault_as_zeros(machine: Machine) -> None:
    p = machine.process()
    a = p.mmap(2 * PGSIZE, RW, ANON)
    p.store(a, b"x" * 2 * PGSIZE)
    used = machine.allocator.nr_used
    p.madvise(a, PGSIZE, MADV_DONTNEED)
    assert machine.allocator.nr_used == used - 1 and not present(p, a)
    assert p.load(a, 2) == b"\0\0" and p.load(a + PGSIZE, 1) == b"x"


def test_dontneed_drops_private_copies_and_the_file_shows_again(
    machine: Machine, file: HostFile
) -> None:
    p = machine.process()
    a = p.mmap(2 * PGSIZE, RW, MAP_PRIVATE, file)
    p.store(a, b"mine")
    p.madvise(a, 2 * PGSIZE, MADV_DONTNEED)
    assert p.anon == {} and p.load(a, 4) == b"\x01" * 4
    assert file.pread(4, 0) == b"\x01" * 4


def test_dontneed_of_a_shared_mapping_keeps_the_store(machine: Machine, file: HostFile) -> None:
    p = machine.process()
    a = p.mmap(PGSIZE, RW, MAP_SHARED, file)
    p.store(a, b"kept")  # D in the PTE: DONTNEED passes it to the page
    p.madvise(a, PGSIZE, MADV_DONTNEED)
    assert not present(p, a)
    file.fsync()
    assert Path(file.path).read_bytes()[:4] == b"kept"
    assert p.load(a, 4) == b"kept"


def test_dontneed_in_a_child_drops_its_share_only(machine: Machine) -> None:
    p = machine.process()
    a = p.mmap(PGSIZE, RW, ANON)
    p.store(a, b"old")
    c = p.fork()
    page = p.anon[a >> 12]
    c.madvise(a, PGSIZE, MADV_DONTNEED)
    assert mapcount(page) == 1 and c.load(a, 3) == b"\0\0\0" and p.load(a, 3) == b"old"
    p.store(a, b"new")
    assert p.anon[a >> 12] is page  # alone again: reused


def test_willneed_reads_the_file_in_and_is_nothing_for_anonymous_memory(
    machine: Machine, file: HostFile
) -> None:
    p = machine.process()
    a = p.mmap(4 * PGSIZE, PROT_READ, MAP_SHARED, file)
    p.madvise(a, 4 * PGSIZE, MADV_WILLNEED)
    assert file.mapping.nr_pages == 4 and not present(p, a)
    b = p.mmap(PGSIZE, RW, ANON)
    used = machine.allocator.nr_used
    p.madvise(b, PGSIZE, MADV_WILLNEED)
    assert machine.allocator.nr_used == used


def test_willneed_stops_at_the_end_of_the_file(machine: Machine, file: HostFile) -> None:
    p = machine.process()
    a = p.mmap(8 * PGSIZE, PROT_READ, MAP_SHARED, file)
    p.madvise(a, 8 * PGSIZE, MADV_WILLNEED)
    assert file.mapping.nr_pages == 4


def test_advice_that_changes_nothing_and_length_zero(machine: Machine) -> None:
    p = machine.process()
    a = p.mmap(PGSIZE, RW, ANON)
    p.store(a, b"s")
    p.madvise(a, PGSIZE, MADV_NORMAL)
    p.madvise(a, PGSIZE, MADV_SEQUENTIAL)
    p.madvise(a, 0, MADV_DONTNEED)
    assert p.load(a, 1) == b"s"


def test_madvise_errors(machine: Machine, file: HostFile) -> None:
    p = machine.process()
    a = p.mmap(PGSIZE, RW, ANON)
    assert errno_of(p.madvise, a, PGSIZE, 7) == errno.EINVAL  # MADV_DONTFORK-ish: not ours
    assert errno_of(p.madvise, a, PGSIZE, -1) == errno.EINVAL
    assert errno_of(p.madvise, a + 1, PGSIZE, MADV_DONTNEED) == errno.EINVAL
    assert errno_of(p.madvise, a, -1, MADV_DONTNEED) == errno.EINVAL
    assert errno_of(p.madvise, a, 1 << 64, MADV_DONTNEED) == errno.EINVAL
    assert errno_of(p.madvise, a, PGSIZE, MADV_REMOVE) == errno.EINVAL  # anonymous
    priv = p.mmap(PGSIZE, RW, MAP_PRIVATE, file)
    assert errno_of(p.madvise, priv, PGSIZE, MADV_REMOVE) == errno.EACCES
    ro = p.mmap(PGSIZE, PROT_READ, MAP_SHARED, file)
    assert errno_of(p.madvise, ro, PGSIZE, MADV_REMOVE) == errno.EACCES
    rw = p.mmap(PGSIZE, RW, MAP_SHARED, file)
    assert errno_of(p.madvise, rw, PGSIZE, MADV_REMOVE) == errno.EOPNOTSUPP
    locked = p.mmap(PGSIZE, RW, ANON | MAP_LOCKED)
    assert errno_of(p.madvise, locked, PGSIZE, MADV_DONTNEED) == errno.EINVAL
    assert errno_of(p.madvise, locked, PGSIZE, MADV_REMOVE) == errno.EINVAL
    with pytest.raises(TypeError):
        p.madvise(a, PGSIZE, "dontneed")  # type: ignore[arg-type]
    assert not p.vmr_lock.held and not p.pte_lock.held


def test_madvise_over_a_gap_does_the_rest_then_answers_enomem(machine: Machine) -> None:
    p = machine.process()
    a = p.mmap(3 * PGSIZE, RW, ANON)
    p.store(a, b"x" * 3 * PGSIZE)
    p.munmap(a + PGSIZE, PGSIZE)
    assert errno_of(p.madvise, a, 3 * PGSIZE, MADV_DONTNEED) == errno.ENOMEM
    assert p.anon == {}  # both sides of the gap dropped
    assert errno_of(p.madvise, a + PGSIZE, PGSIZE, MADV_WILLNEED) == errno.ENOMEM


def test_dontneed_stops_at_a_locked_region_keeping_what_it_did(machine: Machine) -> None:
    p = machine.process()
    a = p.mmap(2 * PGSIZE, RW, ANON)
    p.store(a, b"x" * 2 * PGSIZE)
    p.mlock(a + PGSIZE, PGSIZE)
    assert errno_of(p.madvise, a, 2 * PGSIZE, MADV_DONTNEED) == errno.EINVAL
    assert p.load(a, 1) == b"\0" and p.load(a + PGSIZE, 1) == b"x"


def test_madvise_after_exit_is_esrch(machine: Machine) -> None:
    p = machine.process()
    p.exit()
    for call, args in ((p.madvise, (0x10000, PGSIZE, 0)), (p.mlock, (0, 1)), (p.munlock, (0, 1))):
        assert errno_of(call, *args) == errno.ESRCH


def test_mlock_marks_locked_populates_and_removal_passes_it_over(
    machine: Machine, file: HostFile
) -> None:
    p = machine.process()
    a = p.mmap(4 * PGSIZE, PROT_READ, MAP_SHARED, file)
    p.mlock(a + PGSIZE + 5, 10)  # rounds out to page 1
    assert [(v.base - a, v.end - a, bool(v.flags & MAP_LOCKED)) for v in p.vmrs] == [
        (0, PGSIZE, False),
        (PGSIZE, 2 * PGSIZE, True),
        (2 * PGSIZE, 4 * PGSIZE, False),
    ]
    assert present(p, a + PGSIZE) and not present(p, a)
    file.mapping.remove_contig(0, 4)
    assert present(p, a + PGSIZE)  # a locked page stays
    p.munlock(a, 4 * PGSIZE)
    assert len(p.vmrs) == 1 and not p.vmrs[0].flags & MAP_LOCKED  # merged again
    file.mapping.remove_contig(0, 4)
    assert not present(p, a + PGSIZE)


def test_mlock_of_a_private_writable_region_breaks_cow_now(machine: Machine) -> None:
    p = machine.process()
    a = p.mmap(PGSIZE, RW, ANON)
    p.store(a, b"s")
    c = p.fork()
    c.mlock(a, PGSIZE)
    assert c.anon[a >> 12] is not p.anon[a >> 12]


def test_mlock_errors_leave_the_regions_before_the_gap_locked(machine: Machine) -> None:
    p = machine.process()
    a = p.mmap(3 * PGSIZE, RW, ANON)
    p.munmap(a + PGSIZE, PGSIZE)
    assert errno_of(p.mlock, a, 3 * PGSIZE) == errno.ENOMEM
    assert p.vmrs[0].flags & MAP_LOCKED and not p.vmrs[1].flags & MAP_LOCKED
    assert errno_of(p.munlock, a + PGSIZE, PGSIZE) == errno.ENOMEM
    assert errno_of(p.mlock, a, -1) == errno.EINVAL
    assert errno_of(p.mlock, a, 1 << 64) == errno.EINVAL
    p.mlock(a, 0)  # nothing to do
    assert not p.vmr_lock.held


def test_mlock_of_a_length_that_rounds_up_to_2_64_locks_nothing(machine: Machine) -> None:
    p = machine.process()
    a = p.mmap(PGSIZE, RW, ANON)
    p.mlock(a, (1 << 64) - 1)  # do_mlock's PAGE_ALIGN wraps to 0, as on Linux
    assert not p.vmrs[0].flags & MAP_LOCKED
    assert errno_of(p.mlock, a, (1 << 64) - 2 * PGSIZE) == errno.EINVAL  # the end wraps
