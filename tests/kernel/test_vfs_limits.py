"""Sizes Linux refuses: a write or truncate past the largest size the host
file may have is EFBIG at the call (never a write accepted that every fsync
then fails to make), and a read or write moves at most MAX_RW_COUNT bytes,
the rest a short count."""

from __future__ import annotations

import errno
import os
import resource
from collections.abc import Iterator
from pathlib import Path

import pytest

from pagemap import PGSIZE, FileTooLarge, Machine
from pagemap.kernel import vfs
from tests.conftest import sim

LIMIT = 1 << 20


@pytest.fixture
def fsize_limit() -> Iterator[int]:
    """This process may make files of at most LIMIT bytes (RLIMIT_FSIZE)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, hard))
    try:
        yield LIMIT
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_the_hosts_file_size_limit_is_kept(tmp_path: Path, fsize_limit: int) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"a" * 100)
    m = sim(0, frames=8)
    f = m.open(path, "r+")
    assert f.inode.largest_size() == fsize_limit
    for call in (lambda: f.pwrite(b"x", fsize_limit), lambda: f.truncate(fsize_limit + 1)):
        with pytest.raises(FileTooLarge) as err:
            call()
        assert err.value.errno == errno.EFBIG
    assert f.size == 100 and path.read_bytes() == b"a" * 100
    assert f.pwrite(b"yz", fsize_limit - 1) == 1  # cut short at the limit, as on Linux
    f.fsync()  # which the host accepts: nothing is left dirty that cannot be written
    assert path.stat().st_size == fsize_limit and path.read_bytes()[-1:] == b"y"
    f.truncate(fsize_limit)
    f.fsync()
    assert m.check_quiescent() == []


def test_the_limit_found_is_exactly_the_hosts(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"")
    m = sim(0, frames=4)
    limit = m.open(path, "r+").inode.largest_size()
    assert 0 < limit <= vfs.MAX_FILE_SIZE
    fd = os.open(path, os.O_RDWR)
    try:
        assert os.pwrite(fd, b"x", limit - 1) == 1
        with pytest.raises(OSError) as err:
            os.pwrite(fd, b"x", limit)
        assert err.value.errno == errno.EFBIG
    finally:
        os.ftruncate(fd, 0)
        os.close(fd)


def test_a_write_at_2_to_the_62_is_refused_or_made_durable(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"a")
    m = sim(0, frames=4)
    f = m.open(path, "r+")
    for offset in (1 << 62, f.inode.largest_size() - 1, f.inode.largest_size()):
        try:
            written = f.pwrite(b"b", offset)
        except FileTooLarge:
            assert offset >= f.inode.largest_size() and path.stat().st_size == 1
            continue
        assert written == 1
        f.fsync()  # every write accepted can be made durable
        assert path.stat().st_size == offset + 1
        f.truncate(1)
        f.fsync()
    assert m.check_quiescent() == []


def test_a_read_or_write_moves_at_most_max_rw_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vfs, "MAX_RW_COUNT", 3 * PGSIZE)
    path = tmp_path / "f"
    path.write_bytes(b"r" * (6 * PGSIZE))
    m = sim(0, frames=12)
    f = m.open(path, "r+")
    assert f.pread(6 * PGSIZE, 10) == b"r" * (3 * PGSIZE)
    assert f.pwrite(b"w" * (5 * PGSIZE), PGSIZE) == 3 * PGSIZE
    f.fsync()
    assert path.read_bytes() == b"r" * PGSIZE + b"w" * (3 * PGSIZE) + b"r" * (2 * PGSIZE)
    assert m.check_quiescent() == []


def test_a_huge_read_of_a_huge_sparse_file_is_short_not_a_memory_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "sparse"
    path.write_bytes(b"")
    try:
        os.truncate(path, 1 << 43)
    except OSError:
        pytest.skip("the host cannot make an 8 TiB sparse file here")
    m = Machine(cores=1, memory=8 * PGSIZE, executor="sim")
    f = m.open(path, "r")
    assert f.pread(1 << 43, (1 << 43) - 10) == bytes(10)
    monkeypatch.setattr(vfs, "MAX_RW_COUNT", 2 * PGSIZE)  # what a 2 GiB read would be
    assert f.pread(1 << 43, 0) == bytes(2 * PGSIZE)
    assert m.check_quiescent() == []
