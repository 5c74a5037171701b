"""Bad input to mmap, munmap, mprotect and msync, and faulting accesses: each
raises the error Linux gives (errno and all), with no lock left held and
nothing leaked.  Where Linux defines the answer, test_linux_diff.py checks
the same against the real kernel."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

import pytest

from pagemap import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    PGSIZE,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
    AccessDenied,
    AlreadyExists,
    BusError,
    InvalidArgument,
    KernelError,
    Machine,
    NotMapped,
    Proc,
    SegmentationFault,
)
from pagemap.kernel.hostfs import HostFile
from pagemap.kernel.mm import USER_MIN, USER_TOP
from pagemap.kernel.mman import (
    MAP_FIXED_NOREPLACE,
    MAP_GROWSDOWN,
    MAP_HUGETLB,
    MAP_LOCKED,
    MAP_SHARED_VALIDATE,
    MAP_SYNC,
    MAP_TYPE,
)
from pagemap.kernel.mmap import page_round_up

RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS


@pytest.fixture
def machine() -> Machine:
    return Machine(cores=1, memory=17 * PGSIZE, executor="sim", seed=0)


@pytest.fixture
def proc(machine: Machine) -> Proc:
    return machine.process()


@pytest.fixture
def rw_file(machine: Machine, tmp_path: Path) -> HostFile:
    path = tmp_path / "rw.bin"
    path.write_bytes(bytes(2 * PGSIZE))
    return machine.open(path, "r+")


@pytest.fixture
def ro_file(machine: Machine, tmp_path: Path) -> HostFile:
    path = tmp_path / "ro.bin"
    path.write_bytes(bytes(2 * PGSIZE))
    return machine.open(path, "r")


def fails(call: Callable[[], object], code: int, kind: type[KernelError], proc: Proc) -> str:
    """Run `call`, expecting `kind` with errno `code` and nothing held after."""
    with pytest.raises(kind) as exc:
        call()
    assert exc.value.errno == code, exc.value
    assert not proc.vmr_lock.held and not proc.pte_lock.held
    return str(exc.value)


def unchanged(machine: Machine, proc: Proc) -> None:
    assert proc.vmrs == [] and proc.anon == {}
    assert machine.allocator.nr_used == 0


# -- mmap ---------------------------------------------------------------------------


def test_mmap_of_length_zero_is_einval(machine: Machine, proc: Proc) -> None:
    fails(lambda: proc.mmap(0, RW, ANON), errno.EINVAL, InvalidArgument, proc)
    unchanged(machine, proc)


def test_mmap_fixed_at_an_unaligned_address_is_einval(machine: Machine, proc: Proc) -> None:
    call = lambda: proc.mmap(PGSIZE, RW, ANON | MAP_FIXED, addr=0x1000_0010)  # noqa: E731
    fails(call, errno.EINVAL, InvalidArgument, proc)
    unchanged(machine, proc)


def test_an_unaligned_hint_without_map_fixed_is_only_a_hint(proc: Proc) -> None:
    assert proc.mmap(PGSIZE, RW, ANON, addr=0x2000_0010) == 0x2000_0000


def test_mmap_at_an_unaligned_file_offset_is_einval(
    machine: Machine, proc: Proc, rw_file: HostFile
) -> None:
    call = lambda: proc.mmap(PGSIZE, RW, MAP_SHARED, rw_file, 100)  # noqa: E731
    fails(call, errno.EINVAL, InvalidArgument, proc)
    unchanged(machine, proc)
    assert rw_file.mapping.vmrs == []


@pytest.mark.parametrize(
    "flags",
    [0, MAP_ANONYMOUS, MAP_SHARED_VALIDATE | MAP_ANONYMOUS, 0x4, MAP_SHARED | 0x4, 0x8, 0xF],
)
def test_flags_with_neither_or_other_mapping_types_are_einval(
    machine: Machine, proc: Proc, rw_file: HostFile, flags: int
) -> None:
    """Every bit of Linux's MAP_TYPE counts, not only MAP_SHARED and MAP_PRIVATE."""
    call = lambda: proc.mmap(PGSIZE, RW, flags, rw_file)  # noqa: E731
    msg = fails(call, errno.EINVAL, InvalidArgument, proc)
    assert "MAP_SHARED" in msg and "MAP_PRIVATE" in msg
    unchanged(machine, proc)
    assert rw_file.mapping.vmrs == []


def test_both_shared_and_private_of_a_file_is_map_shared_validate(
    machine: Machine, proc: Proc, rw_file: HostFile, ro_file: HostFile
) -> None:
    """As on Linux: a shared mapping (the VMR keeps MAP_SHARED alone), which
    refuses flags it does not know and PROT_WRITE of a read-only file."""
    a = proc.mmap(PGSIZE, RW, MAP_SHARED_VALIDATE | MAP_LOCKED, rw_file)
    assert proc.vmrs[0].flags & MAP_TYPE == MAP_SHARED
    proc.store(a, b"shared")
    rw_file.fsync()
    assert Path(rw_file.path).read_bytes()[:6] == b"shared"
    assert len(proc.anon) == 0  # MAP_LOCKED did not take it for private
    proc.munmap(a, PGSIZE)
    for unknown in (0x200, MAP_SYNC, 0x400000, 0x8000_0000):
        call = lambda: proc.mmap(PGSIZE, RW, MAP_SHARED_VALIDATE | unknown, rw_file)  # noqa: E731
        msg = fails(call, errno.EOPNOTSUPP, KernelError, proc)
        assert f"{unknown:#x}" in msg
    call = lambda: proc.mmap(PGSIZE, RW, MAP_SHARED_VALIDATE, ro_file)  # noqa: E731
    fails(call, errno.EACCES, AccessDenied, proc)
    assert proc.vmrs == [] and rw_file.mapping.vmrs == [] and ro_file.mapping.vmrs == []
    # Plain MAP_SHARED ignores what it does not know.
    proc.mmap(PGSIZE, RW, MAP_SHARED | 0x200 | 0x200000, rw_file)


@pytest.mark.parametrize("kind", [MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE])
@pytest.mark.parametrize("flag", [MAP_HUGETLB, MAP_GROWSDOWN])
def test_map_hugetlb_and_map_growsdown_of_a_file_are_einval(
    machine: Machine, proc: Proc, rw_file: HostFile, kind: int, flag: int
) -> None:
    call = lambda: proc.mmap(PGSIZE, PROT_READ, kind | flag, rw_file)  # noqa: E731
    fails(call, errno.EINVAL, InvalidArgument, proc)
    unchanged(machine, proc)
    assert rw_file.mapping.vmrs == []


def test_map_growsdown_of_anonymous_memory_is_einval_only_when_shared(
    machine: Machine, proc: Proc
) -> None:
    call = lambda: proc.mmap(PGSIZE, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_GROWSDOWN)  # noqa: E731
    fails(call, errno.EINVAL, InvalidArgument, proc)
    unchanged(machine, proc)
    proc.mmap(PGSIZE, RW, ANON | MAP_GROWSDOWN)


def test_map_fixed_noreplace_over_a_mapping_is_eexist_and_changes_nothing(
    machine: Machine, proc: Proc, rw_file: HostFile
) -> None:
    a = proc.mmap(2 * PGSIZE, RW, MAP_SHARED, rw_file)
    proc.store(a + PGSIZE, b"kept")
    before = [(v.base, v.end, v.prot, v.flags, v.foff) for v in proc.vmrs]
    call = lambda: proc.mmap(  # noqa: E731
        PGSIZE, PROT_READ, ANON | MAP_FIXED_NOREPLACE, addr=a + PGSIZE
    )
    fails(call, errno.EEXIST, AlreadyExists, proc)
    assert [(v.base, v.end, v.prot, v.flags, v.foff) for v in proc.vmrs] == before
    assert proc.load(a + PGSIZE, 4) == b"kept"
    # Where nothing is mapped it maps exactly there; unaligned is EINVAL.
    assert proc.mmap(PGSIZE, RW, ANON | MAP_FIXED_NOREPLACE, addr=a + 2 * PGSIZE) == a + 2 * PGSIZE
    call = lambda: proc.mmap(PGSIZE, RW, ANON | MAP_FIXED_NOREPLACE, addr=a + 8)  # noqa: E731
    fails(call, errno.EINVAL, InvalidArgument, proc)


def test_mmap_finds_its_address_before_it_checks_the_mapping_type(
    proc: Proc, ro_file: HostFile
) -> None:
    """Linux's order: ENOMEM (no room) and EPERM before EINVAL for the
    type, EOPNOTSUPP and EACCES."""
    top = USER_TOP - PGSIZE
    for flags, file in ((MAP_FIXED, ro_file), (MAP_SHARED_VALIDATE | 0x200 | MAP_FIXED, ro_file)):
        call = lambda: proc.mmap(2 * PGSIZE, RW, flags, file, addr=top)  # noqa: E731
        fails(call, errno.ENOMEM, NotMapped, proc)
    call = lambda: proc.mmap(PGSIZE, RW, MAP_SHARED | MAP_FIXED, ro_file, addr=PGSIZE)  # noqa: E731
    fails(call, errno.EPERM, KernelError, proc)


def test_unknown_protection_bits_are_ignored_by_mmap_and_einval_for_mprotect(
    proc: Proc,
) -> None:
    a = proc.mmap(PGSIZE, 0x80 | PROT_READ, ANON)  # as on Linux
    assert proc.vmrs[0].prot == PROT_READ
    fails(lambda: proc.mprotect(a, PGSIZE, 0x81), errno.EINVAL, InvalidArgument, proc)


def test_write_to_a_shared_mapping_of_a_read_only_file_is_eacces(
    machine: Machine, proc: Proc, ro_file: HostFile
) -> None:
    call = lambda: proc.mmap(PGSIZE, RW, MAP_SHARED, ro_file)  # noqa: E731
    fails(call, errno.EACCES, AccessDenied, proc)
    unchanged(machine, proc)
    assert ro_file.mapping.vmrs == []
    # Reading it shared, or writing it privately, is fine.
    proc.mmap(PGSIZE, PROT_READ, MAP_SHARED, ro_file)
    proc.mmap(PGSIZE, RW, MAP_PRIVATE, ro_file)


def test_mapping_a_write_only_file_is_eacces(machine: Machine, proc: Proc, tmp_path: Path) -> None:
    wo = machine.open(tmp_path / "wo.bin", "w")
    fails(lambda: proc.mmap(PGSIZE, PROT_READ, MAP_SHARED, wo), errno.EACCES, AccessDenied, proc)


def test_a_file_mapping_with_no_file_is_ebadf(proc: Proc) -> None:
    fails(lambda: proc.mmap(PGSIZE, RW, MAP_SHARED), errno.EBADF, KernelError, proc)
    # As on Linux, the missing file is noticed before the bad flags.
    fails(lambda: proc.mmap(PGSIZE, RW, 0), errno.EBADF, KernelError, proc)


def test_map_fixed_below_the_lowest_user_address_is_eperm(proc: Proc) -> None:
    call = lambda: proc.mmap(PGSIZE, RW, ANON | MAP_FIXED, addr=USER_MIN - PGSIZE)  # noqa: E731
    fails(call, errno.EPERM, KernelError, proc)


def test_a_mapping_larger_than_the_address_space_is_enomem(proc: Proc) -> None:
    fails(lambda: proc.mmap(USER_TOP + 1, RW, ANON), errno.ENOMEM, NotMapped, proc)


# -- munmap, mprotect, msync ------------------------------------------------------------


def test_munmap_of_length_zero_or_an_unaligned_address_is_einval(proc: Proc) -> None:
    a = proc.mmap(PGSIZE, RW, ANON)
    fails(lambda: proc.munmap(a, 0), errno.EINVAL, InvalidArgument, proc)
    fails(lambda: proc.munmap(a + 1, PGSIZE), errno.EINVAL, InvalidArgument, proc)
    fails(lambda: proc.munmap(a, USER_TOP), errno.EINVAL, InvalidArgument, proc)
    assert len(proc.vmrs) == 1


def test_munmap_of_a_range_with_nothing_mapped_succeeds(machine: Machine, proc: Proc) -> None:
    proc.munmap(0x5000_0000, 16 * PGSIZE)
    a = proc.mmap(PGSIZE, RW, ANON)
    proc.munmap(a + PGSIZE, PGSIZE)  # just past it
    assert len(proc.vmrs) == 1


def test_mprotect_of_a_range_with_nothing_mapped_is_enomem(proc: Proc) -> None:
    fails(lambda: proc.mprotect(0x5000_0000, PGSIZE, PROT_READ), errno.ENOMEM, NotMapped, proc)


def test_mprotect_over_a_hole_changes_what_comes_before_it_then_fails_enomem(
    proc: Proc,
) -> None:
    """Linux applies the change region by region and stops at the hole."""
    a = proc.mmap(PGSIZE, RW, ANON)
    call = lambda: proc.mprotect(a, 3 * PGSIZE, PROT_READ)  # noqa: E731
    fails(call, errno.ENOMEM, NotMapped, proc)
    assert proc.vmrs[0].prot == PROT_READ


# Lengths that take the end of the range past 2**64, where Linux's unsigned
# end wraps: one that ends exactly at 2**64 (the end wraps to 0), one that is
# the largest size_t (rounded up to whole pages it is 2**64, so it wraps to 0
# pages), and one a page short of that.
WRAPS: list[Callable[[int], int]] = [
    lambda a: (1 << 64) - a,
    lambda a: (1 << 64) - 1,
    lambda a: (1 << 64) - PGSIZE,
]


@pytest.mark.parametrize("wrap", range(len(WRAPS)))
def test_mprotect_whose_end_wraps_past_2_64_is_enomem_and_changes_nothing(
    machine: Machine, proc: Proc, rw_file: HostFile, wrap: int
) -> None:
    """Linux checks the end before it looks at any region (end <= start:
    ENOMEM); a range that merely passes the top of user space changes the
    regions below it first (the test above)."""
    a = proc.mmap(2 * PGSIZE, RW, MAP_SHARED, rw_file)
    proc.store(a, b"x")
    ptes = [proc.page_table.lookup(a >> 12)]
    before = [w.value if w is not None else 0 for w in ptes]
    call = lambda: proc.mprotect(a, WRAPS[wrap](a), PROT_READ)  # noqa: E731
    msg = fails(call, errno.ENOMEM, NotMapped, proc)
    assert "2**64" in msg
    assert [(v.base, v.end, v.prot) for v in proc.vmrs] == [(a, a + 2 * PGSIZE, RW)]
    assert [w.value if w is not None else 0 for w in ptes] == before
    proc.store(a, b"y")  # still writable, with no fault to make it so
    assert machine.check_quiescent() == []


@pytest.mark.parametrize("wrap", range(len(WRAPS)))
def test_msync_whose_end_wraps_past_2_64_writes_nothing(
    proc: Proc, rw_file: HostFile, wrap: int
) -> None:
    """Linux's msync: ENOMEM for an end that wraps, but a length whose round
    up to whole pages wraps to 0 is an empty range, and succeeds; either
    way, nothing is written."""
    a = proc.mmap(PGSIZE, RW, MAP_SHARED, rw_file)
    proc.store(a, b"not yet")
    length = WRAPS[wrap](a)
    if page_round_up(length) == 1 << 64:
        proc.msync(a, length)
    else:
        fails(lambda: proc.msync(a, length), errno.ENOMEM, NotMapped, proc)
    assert Path(rw_file.path).read_bytes()[:7] == bytes(7)


def test_mprotect_einval_cases_and_length_zero(proc: Proc) -> None:
    a = proc.mmap(PGSIZE, RW, ANON)
    fails(lambda: proc.mprotect(a + 8, PGSIZE, PROT_READ), errno.EINVAL, InvalidArgument, proc)
    fails(lambda: proc.mprotect(a, PGSIZE, 0x40), errno.EINVAL, InvalidArgument, proc)
    proc.mprotect(a, 0, PROT_READ)  # as on Linux: nothing to do, no error
    proc.mprotect(0x6000_0000, 0, PROT_READ)
    assert proc.vmrs[0].prot == RW


def test_mprotect_write_on_a_shared_mapping_of_a_read_only_file_is_eacces(
    proc: Proc, ro_file: HostFile
) -> None:
    a = proc.mmap(PGSIZE, PROT_READ, MAP_SHARED, ro_file)
    fails(lambda: proc.mprotect(a, PGSIZE, RW), errno.EACCES, AccessDenied, proc)
    assert proc.vmrs[0].prot == PROT_READ
    proc.mprotect(a, PGSIZE, PROT_READ | PROT_EXEC)


def test_msync_of_an_unmapped_range_is_enomem_and_unaligned_is_einval(proc: Proc) -> None:
    a = proc.mmap(PGSIZE, RW, ANON)
    fails(lambda: proc.msync(a, 2 * PGSIZE), errno.ENOMEM, NotMapped, proc)
    fails(lambda: proc.msync(a + 1, PGSIZE), errno.EINVAL, InvalidArgument, proc)
    proc.msync(a, PGSIZE)
    proc.msync(a, 0)


# -- faulting accesses ----------------------------------------------------------------------


def test_an_access_to_an_unmapped_address_is_sigsegv_efault(machine: Machine, proc: Proc) -> None:
    msg = fails(lambda: proc.load(0x5000_0000, 4), errno.EFAULT, SegmentationFault, proc)
    assert "SIGSEGV" in msg and "nothing is mapped" in msg
    fails(lambda: proc.store(-PGSIZE, b"x"), errno.EFAULT, SegmentationFault, proc)
    fails(lambda: proc.load(USER_TOP, 1), errno.EFAULT, SegmentationFault, proc)
    unchanged(machine, proc)


def test_a_store_to_a_read_only_mapping_is_sigsegv_eperm(
    machine: Machine, proc: Proc, rw_file: HostFile
) -> None:
    a = proc.mmap(PGSIZE, PROT_READ, MAP_SHARED, rw_file)
    msg = fails(lambda: proc.store(a, b"x"), errno.EPERM, SegmentationFault, proc)
    assert "SIGSEGV" in msg and "PROT_READ" in msg
    assert rw_file.pread(1, 0) == b"\0"
    assert machine.check_quiescent() == []


def test_a_load_from_prot_none_is_sigsegv_eperm(proc: Proc) -> None:
    a = proc.mmap(PGSIZE, 0, ANON)
    fails(lambda: proc.load(a, 1), errno.EPERM, SegmentationFault, proc)


def test_an_access_past_the_end_of_file_is_sigbus(
    machine: Machine, proc: Proc, rw_file: HostFile
) -> None:
    a = proc.mmap(4 * PGSIZE, RW, MAP_SHARED, rw_file)
    msg = fails(lambda: proc.load(a + 2 * PGSIZE, 1), errno.EFAULT, BusError, proc)
    assert "SIGBUS" in msg and "past its end" in msg
    fails(lambda: proc.store(a + 3 * PGSIZE, b"x"), errno.EFAULT, BusError, proc)
    assert machine.check_quiescent() == []
    assert len(rw_file.pread(3 * PGSIZE, 0)) == 2 * PGSIZE  # nothing grew the file


def test_the_two_signals_are_told_apart_by_class_and_attribute() -> None:
    assert SegmentationFault.signal == "SIGSEGV" and BusError.signal == "SIGBUS"
    assert not issubclass(BusError, SegmentationFault)
    assert issubclass(BusError, OSError) and issubclass(SegmentationFault, KernelError)


def test_a_negative_load_length_is_einval_and_an_empty_access_cannot_fault(proc: Proc) -> None:
    fails(lambda: proc.load(0x1000_0000, -1), errno.EINVAL, InvalidArgument, proc)
    assert proc.load(0x1000_0000, 0) == b""
    proc.store(0x1000_0000, b"")
