"""File.fallocate on host files (kernel/fallocate.py): punching holes through
the page cache (cached, dirty and mapped pages of the range), allocation,
and Linux's errors."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pagemap import PGSIZE, Machine
from pagemap.kernel.errors import KernelError
from pagemap.kernel.fallocate import (
    FALLOC_FL_COLLAPSE_RANGE,
    FALLOC_FL_KEEP_SIZE,
    FALLOC_FL_NO_HIDE_STALE,
    FALLOC_FL_PUNCH_HOLE,
    FALLOC_FL_ZERO_RANGE,
    PUNCH,
)
from pagemap.kernel.hostfs import HostFile
from pagemap.kernel.mman import MAP_SHARED, PROT_RW

PAGES = 4
DATA = bytes((i * 7 + 1) % 251 for i in range(PAGES * PGSIZE))


@pytest.fixture
def machine() -> Iterator[Machine]:
    m = Machine(cores=1, memory="1MiB")
    yield m
    m.close()


def open_file(machine: Machine, tmp_path: Path, mode: str = "r+") -> HostFile:
    path = tmp_path / "f"
    path.write_bytes(DATA)
    return machine.open(path, mode)


def expect_punched(offset: int, length: int) -> bytes:
    end = min(offset + length, len(DATA))
    return DATA[:offset] + bytes(max(0, end - offset)) + DATA[end:]


@pytest.mark.parametrize(
    ("offset", "length"),
    [
        (0, PGSIZE),  # one whole page
        (PGSIZE, 2 * PGSIZE),  # two whole pages
        (100, 200),  # inside one page
        (PGSIZE - 10, PGSIZE + 20),  # partial, whole, partial
        (3 * PGSIZE + 5, 10 * PGSIZE),  # past the end: clipped, size kept
    ],
)
def test_a_punched_range_reads_as_zeros_everywhere(
    machine: Machine, tmp_path: Path, offset: int, length: int
) -> None:
    f = open_file(machine, tmp_path)
    proc = machine.process()
    base = proc.mmap(PAGES * PGSIZE, PROT_RW, MAP_SHARED, f, 0)
    assert proc.load(base, PAGES * PGSIZE) == DATA  # every page cached and mapped
    f.pwrite(DATA[:PGSIZE], 0)  # page 0 dirty too
    f.fallocate(PUNCH, offset, length)
    want = expect_punched(offset, length)
    assert f.size == len(DATA)
    assert f.pread(len(DATA), 0) == want
    assert proc.load(base, PAGES * PGSIZE) == want  # mapped reads of the punched range
    f.fsync()
    assert (tmp_path / "f").read_bytes() == want
    assert not f.mapping.invalidate_lock.held
    assert machine.check_quiescent() == []


def test_punching_frees_host_blocks(machine: Machine, tmp_path: Path) -> None:
    f = open_file(machine, tmp_path)
    f.fsync()
    before = os.stat(tmp_path / "f").st_blocks
    f.fallocate(PUNCH, 0, 2 * PGSIZE)
    assert os.stat(tmp_path / "f").st_blocks < before
    assert f.pread(2 * PGSIZE, 0) == bytes(2 * PGSIZE)


def test_stores_after_a_punch_land(machine: Machine, tmp_path: Path) -> None:
    f = open_file(machine, tmp_path)
    proc = machine.process()
    base = proc.mmap(PAGES * PGSIZE, PROT_RW, MAP_SHARED, f, 0)
    f.fallocate(PUNCH, PGSIZE, PGSIZE)
    proc.store(base + PGSIZE + 8, b"new")
    f.fsync()
    got = (tmp_path / "f").read_bytes()
    assert got[PGSIZE : PGSIZE + 16] == bytes(8) + b"new" + bytes(5)


def test_allocation_grows_the_file_unless_keep_size(machine: Machine, tmp_path: Path) -> None:
    f = open_file(machine, tmp_path)
    f.fallocate(FALLOC_FL_KEEP_SIZE, 0, 8 * PGSIZE)
    assert f.size == len(DATA)
    assert os.path.getsize(tmp_path / "f") == len(DATA)
    f.fallocate(0, 6 * PGSIZE, 100)
    assert f.size == 6 * PGSIZE + 100
    assert os.path.getsize(tmp_path / "f") == 6 * PGSIZE + 100
    assert f.pread(PGSIZE, PAGES * PGSIZE) == bytes(PGSIZE)
    f.fallocate(0, 0, 10)  # inside the file: nothing changes
    assert f.size == 6 * PGSIZE + 100
    assert f.pread(10, 0) == DATA[:10]


def test_allocation_zeroes_what_a_store_left_past_the_old_end(
    machine: Machine, tmp_path: Path
) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"a" * 100)
    f = machine.open(path, "r+")
    proc = machine.process()
    base = proc.mmap(PGSIZE, PROT_RW, MAP_SHARED, f, 0)
    proc.store(base + 200, b"junk")  # past the end, inside the last page
    f.fallocate(0, 0, 300)
    assert f.pread(300, 0) == b"a" * 100 + bytes(200)


@pytest.mark.parametrize(
    ("mode", "offset", "length", "code"),
    [
        (PUNCH, -1, 10, errno.EINVAL),
        (PUNCH, 0, 0, errno.EINVAL),
        (FALLOC_FL_PUNCH_HOLE, 0, 10, errno.EOPNOTSUPP),  # without KEEP_SIZE
        (PUNCH | FALLOC_FL_ZERO_RANGE, 0, 10, errno.EOPNOTSUPP),
        (0x80, 0, 10, errno.EOPNOTSUPP),  # an unknown bit
        (FALLOC_FL_NO_HIDE_STALE, 0, 10, errno.EOPNOTSUPP),
        (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_KEEP_SIZE, 0, PGSIZE, errno.EINVAL),
        (FALLOC_FL_ZERO_RANGE, 0, 10, errno.EOPNOTSUPP),  # valid, not implemented here
        (0, (1 << 63) - 5, 10, errno.EFBIG),
    ],
)
def test_linuxs_errors(
    machine: Machine, tmp_path: Path, mode: int, offset: int, length: int, code: int
) -> None:
    f = open_file(machine, tmp_path)
    with pytest.raises(KernelError) as info:
        f.fallocate(mode, offset, length)
    assert info.value.errno == code
    assert f.pread(len(DATA), 0) == DATA
    assert f.inode.lock.count == 1 and not f.mapping.invalidate_lock.held


def test_a_read_only_file_is_ebadf_after_the_mode_checks(machine: Machine, tmp_path: Path) -> None:
    f = open_file(machine, tmp_path, "r")
    with pytest.raises(KernelError) as info:
        f.fallocate(PUNCH, 0, 10)
    assert info.value.errno == errno.EBADF
    with pytest.raises(KernelError) as info:
        f.fallocate(FALLOC_FL_PUNCH_HOLE, 0, 10)  # EOPNOTSUPP comes first, as in vfs_fallocate
    assert info.value.errno == errno.EOPNOTSUPP
    f.close()
    with pytest.raises(KernelError) as info:
        f.fallocate(PUNCH, 0, 10)
    assert info.value.errno == errno.EBADF


def test_a_bad_type_is_a_type_error(machine: Machine, tmp_path: Path) -> None:
    f = open_file(machine, tmp_path)
    with pytest.raises(TypeError):
        f.fallocate(PUNCH, "0", 10)  # type: ignore[arg-type]


def test_a_failing_host_punch_leaves_no_lock_held(machine: Machine, tmp_path: Path) -> None:
    f = open_file(machine, tmp_path)
    assert f.pread(10, PGSIZE) == DATA[PGSIZE : PGSIZE + 10]  # page 1 cached
    f.faults.fail("truncate", 1)
    with pytest.raises(KernelError) as info:
        f.fallocate(PUNCH, PGSIZE + 10, 100)
    assert info.value.errno == errno.EIO
    assert f.inode.lock.count == 1 and not f.mapping.invalidate_lock.held
    assert f.inode.host_lock.held is False
    # The partial page was zeroed and dirtied in the cache before the host
    # refused: the zeros still reach the disk at the next fsync.
    f.fsync()
    assert (tmp_path / "f").read_bytes() == expect_punched(PGSIZE + 10, 100)
    assert machine.check_quiescent() == []


def test_the_host_refusing_a_mode_is_its_errno(
    machine: Machine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pagemap.kernel.hostio as hostio

    def refuse(fd: int, mode: int, offset: int, length: int) -> None:
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    f = open_file(machine, tmp_path)
    monkeypatch.setattr(hostio, "host_fallocate", refuse)
    with pytest.raises(KernelError) as info:
        f.fallocate(PUNCH, 0, PGSIZE)
    assert info.value.errno == errno.EOPNOTSUPP
    assert not f.mapping.invalidate_lock.held
