"""The kernel's access to a process's memory (kernel/gup.py): forced writes,
pins, and the three published fixes on their switches, shown sequentially
(the races themselves are check/scenarios/known/cow.py's rows)."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pagemap import MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PGSIZE, PROT_READ, Machine, Proc
from pagemap.hw.mmu import PTE_W
from pagemap.kernel.errors import KernelError
from pagemap.kernel.hostfs import HostFile
from pagemap.kernel.madvise import MADV_DONTNEED
from pagemap.kernel.mapcount import mapcount

RW = PROT_READ | 0x2
ANON = MAP_PRIVATE | MAP_ANONYMOUS


@pytest.fixture
def machine() -> Machine:
    return Machine(cores=2, memory=(32 + 1) * PGSIZE, executor="sim", seed=0)


@pytest.fixture
def file(machine: Machine, tmp_path: Path) -> HostFile:
    path = tmp_path / "data.bin"
    path.write_bytes(b"\x01" * PGSIZE + b"\x02" * PGSIZE)
    return machine.open(path, "r")


def errno_of(call: object, *args: object, **kw: object) -> int:
    with pytest.raises(KernelError) as exc:
        call(*args, **kw)  # type: ignore[operator]
    assert exc.value.errno is not None
    return exc.value.errno


def test_a_forced_write_into_a_read_only_private_mapping_lands_in_a_copy(
    machine: Machine, file: HostFile
) -> None:
    p = machine.process()
    a = p.mmap(2 * PGSIZE, PROT_READ, MAP_PRIVATE, file)
    assert p.load(a, 1) == b"\x01"
    assert p.access_remote(a + PGSIZE - 2, b"poke", force=True) == 4  # spans two pages
    assert p.load(a + PGSIZE - 2, 4) == b"poke"
    assert len(p.anon) == 2
    word = p.page_table.lookup(a >> 12)
    assert word is not None and not word.value & PTE_W  # still read-only to the user
    assert file.pread(PGSIZE, 0) == b"\x01" * PGSIZE  # the file never sees it
    assert Path(file.path).read_bytes()[PGSIZE - 2 : PGSIZE + 2] == b"\x01\x01\x02\x02"
    assert p.read_remote(a + PGSIZE - 2, 4) == b"poke"


def test_what_a_write_may_not_reach_is_eio(machine: Machine, file: HostFile) -> None:
    p = machine.process()
    priv = p.mmap(PGSIZE, PROT_READ, MAP_PRIVATE, file)
    assert errno_of(p.access_remote, priv, b"x") == errno.EIO  # not forced
    shared = p.mmap(PGSIZE, PROT_READ, MAP_SHARED, file)
    assert errno_of(p.access_remote, shared, b"x", force=True) == errno.EIO
    assert errno_of(p.access_remote, 0x10000, b"x", force=True) == errno.EIO  # unmapped
    none = p.mmap(PGSIZE, 0, ANON)
    assert errno_of(p.read_remote, none, 1, force=True) == errno.EIO
    assert file.pread(1, 0) == b"\x01" and not p.vmr_lock.held and not p.pte_lock.held


def test_a_transfer_stops_at_the_first_page_it_cannot_reach(machine: Machine) -> None:
    p = machine.process()
    a = p.mmap(2 * PGSIZE, RW, ANON)
    p.munmap(a + PGSIZE, PGSIZE)
    assert p.access_remote(a + PGSIZE - 2, b"four") == 2
    assert p.read_remote(a + PGSIZE - 2, 4) == b"fo"
    assert p.load(a + PGSIZE - 2, 2) == b"fo"


def test_a_forced_write_into_a_shared_page_copies_for_the_target_only(
    machine: Machine,
) -> None:
    p = machine.process()
    a = p.mmap(PGSIZE, PROT_READ, ANON)
    assert p.load(a, 1) == b"\0"
    c = p.fork()
    assert c.access_remote(a, b"c", force=True) == 1
    assert (p.load(a, 1), c.load(a, 1)) == (b"\0", b"c")


def test_a_pin_holds_the_frame_and_a_release_is_once(machine: Machine, file: HostFile) -> None:
    p = machine.process()
    a = p.mmap(PGSIZE, PROT_READ, MAP_SHARED, file)
    pin = p.pin_user_page(a)
    assert pin.mapping is file.mapping and pin.read(0, 2) == b"\x01\x01"
    p.munmap(a, PGSIZE)
    file.mapping.remove_contig(0, 1)
    assert pin.read(0, 1) == b"\x01"  # the slot reference kept it
    pin.release()
    with pytest.raises(KernelError):
        pin.release()
    with pytest.raises(KernelError):
        pin.read(0, 1)
    b = p.mmap(PGSIZE, RW, ANON)
    anon = p.pin_user_page(b, write=True)
    p.munmap(b, PGSIZE)
    used = machine.allocator.nr_used
    anon.write(0, b"x")  # the frame is still ours
    anon.release()
    assert machine.allocator.nr_used == used - 1
    assert machine.check_quiescent() == []


@contextmanager
def dontneed_after_first_forced_fault(p: Proc, a: int) -> Iterator[None]:
    """Run MADV_DONTNEED right after the forced write fault, the window of
    Dirty COW: the fault made the copy, and the retry has not found it yet."""
    original = p.handle_page_fault
    done: list[int] = []

    def fault(va: int, write: bool, force: bool = False) -> None:
        original(va, write, force)
        if force and not done:
            done.append(1)
            p.madvise(a, PGSIZE, MADV_DONTNEED)

    p.handle_page_fault = fault  # type: ignore[method-assign]
    try:
        yield
    finally:
        del p.handle_page_fault


@pytest.mark.parametrize("fix", [True, False])
def test_dirty_cow_with_and_without_foll_cow(machine: Machine, file: HostFile, fix: bool) -> None:
    p = machine.process()
    p.foll_cow = fix
    a = p.mmap(PGSIZE, PROT_READ, MAP_PRIVATE, file)
    with dontneed_after_first_forced_fault(p, a):
        assert p.access_remote(a, b"pwned", force=True) == 5
    cached = file.pread(5, 0)
    if fix:
        assert cached == b"\x01" * 5 and p.load(a, 5) == b"pwned"
    else:
        assert cached == b"pwned"  # the read-only file's page cache changed


@pytest.mark.parametrize("fix", [True, False])
def test_cow_breaks_either_way_with_and_without_the_pin_breaking_cow(
    machine: Machine, fix: bool
) -> None:
    parent = machine.process()
    a = parent.mmap(PGSIZE, RW, ANON)
    parent.store(a, b"before")
    child = parent.fork()
    child.gup_breaks_cow = fix
    pin = child.pin_user_page(a)
    child.madvise(a, PGSIZE, MADV_DONTNEED)  # vmsplice, then unmap
    parent.store(a, b"after!")
    assert pin.read(0, 6) == (b"before" if fix else b"after!")
    pin.release()
    assert parent.load(a, 6) == b"after!"
    assert mapcount(parent.anon[a >> 12]) == 1


def test_a_forced_write_with_no_frame_for_its_copy_is_eio_and_leaks_nothing(
    machine: Machine, file: HostFile
) -> None:
    p = machine.process()
    a = p.mmap(PGSIZE, PROT_READ, MAP_PRIVATE, file)
    assert p.load(a, 1) == b"\x01"
    hog = p.mmap(64 * PGSIZE, RW, ANON)
    with pytest.raises(KernelError):
        for i in range(64):
            p.store(hog + i * PGSIZE, b"h")
    used = machine.allocator.nr_used
    assert errno_of(p.access_remote, a, b"x", force=True) == errno.EIO
    assert machine.allocator.nr_used == used and p.anon.get(a >> 12) is None
    assert not p.vmr_lock.held and not p.pte_lock.held
    with pytest.raises(KernelError) as exc:
        p.pin_user_page(a, write=True, force=True)
    assert exc.value.errno == errno.ENOMEM and machine.allocator.nr_used == used
    p.munmap(hog, 64 * PGSIZE)
    assert p.access_remote(a, b"x", force=True) == 1
    assert file.pread(1, 0) == b"\x01"
    p.exit()
    assert machine.check_quiescent() == []
