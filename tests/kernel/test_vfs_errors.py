"""Bad input and failing host I/O: a clear, errno-carrying KernelError, and
nothing changed, locked, leaked or lost."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from pagemap import PG_DIRTY, PGSIZE, File, IOFailure, KernelError, Machine
from tests.conftest import sim

ALL = 1 << 30
FRAMES = 8


@pytest.fixture
def machine() -> Machine:
    return sim(0, frames=FRAMES)


def make_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def expect_error(code: int, call: Callable[..., object], *args: object) -> KernelError:
    with pytest.raises(KernelError) as err:
        call(*args)
    assert err.value.errno == code, err.value
    assert err.value.strerror and " " in err.value.strerror  # a sentence, not a code
    return err.value


def assert_clean(machine: Machine) -> None:
    """No lock held, no reference or frame leaked."""
    assert machine.check_quiescent() == []
    cached = sum(pm.nr_pages for pm in machine.page_maps)
    assert machine.allocator.nr_free + cached == FRAMES


def is_dirty(f: File, index: int) -> bool:
    page = f.mapping.load_page(index)
    try:
        return bool(page.flags.load() & PG_DIRTY)
    finally:
        f.mapping.put_page(page)


# -- bad input -------------------------------------------------------------------


def test_missing_file(machine: Machine, tmp_path: Path) -> None:
    for mode in ("r", "r+"):
        expect_error(errno.ENOENT, machine.open, tmp_path / "nope", mode)
    assert not (tmp_path / "nope").exists()
    assert machine.hostfs.inodes == {} and machine.page_maps == []


def test_bad_mode_and_not_a_regular_file(machine: Machine, tmp_path: Path) -> None:
    path = make_file(tmp_path / "f", b"x")
    for mode in ("a", "x", "rw", ""):
        expect_error(errno.EINVAL, machine.open, path, mode)
    expect_error(errno.EISDIR, lambda: machine.open(tmp_path, "r"))
    assert machine.hostfs.inodes == {}


def test_writing_a_read_only_file(machine: Machine, tmp_path: Path) -> None:
    path = make_file(tmp_path / "f", b"a" * 100)
    f = machine.open(path, "r")
    expect_error(errno.EBADF, lambda: f.pwrite(b"b", 0))
    expect_error(errno.EBADF, lambda: f.truncate(0))
    assert f.size == 100 and f.mapping.nr_pages == 0
    assert f.pread(200, 0) == b"a" * 100
    f.fsync()
    assert path.read_bytes() == b"a" * 100
    assert_clean(machine)


def test_reading_a_write_only_file(machine: Machine, tmp_path: Path) -> None:
    f = machine.open(tmp_path / "f", "w")
    f.pwrite(b"abc", 0)
    expect_error(errno.EBADF, lambda: f.pread(3, 0))


def test_negative_offsets_and_sizes(machine: Machine, tmp_path: Path) -> None:
    path = make_file(tmp_path / "f", b"a" * 100)
    f = machine.open(path, "r+")
    expect_error(errno.EINVAL, lambda: f.pread(10, -1))
    expect_error(errno.EINVAL, lambda: f.pread(-1, 0))
    expect_error(errno.EINVAL, lambda: f.pwrite(b"x", -5))
    expect_error(errno.EINVAL, lambda: f.truncate(-1))
    expect_error(errno.EFBIG, lambda: f.pwrite(b"x", 1 << 63))
    assert f.size == 100 and f.mapping.nr_pages == 0
    assert path.read_bytes() == b"a" * 100
    assert_clean(machine)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write any file")
def test_opening_for_write_a_file_the_host_will_not_let_us_write(
    machine: Machine, tmp_path: Path
) -> None:
    path = make_file(tmp_path / "f", b"ro")
    path.chmod(0o444)
    expect_error(errno.EACCES, lambda: machine.open(path, "r+"))
    assert machine.open(path, "r").pread(2, 0) == b"ro"


def test_bad_fault_kind(machine: Machine, tmp_path: Path) -> None:
    # The fault injector is a test's setting, not a system call: a ValueError.
    f = machine.open(make_file(tmp_path / "f", b""), "r+")
    with pytest.raises(ValueError, match="erase"):
        f.inode.faults.fail("erase", 1)
    with pytest.raises(ValueError, match="negative"):
        f.inode.faults.fail("read", -1)
    assert f.inode.faults.pending("read") == 0


# -- host I/O errors ---------------------------------------------------------------


def test_readpage_error_is_eio_and_leaves_nothing_behind(machine: Machine, tmp_path: Path) -> None:
    f = machine.open(make_file(tmp_path / "f", b"a" * 3 * PGSIZE), "r")
    f.inode.faults.fail("read", 1)
    err = expect_error(errno.EIO, lambda: f.pread(10, PGSIZE))
    assert isinstance(err, IOFailure)
    assert f.mapping.nr_pages == 0
    assert_clean(machine)
    assert f.pread(10, PGSIZE) == b"a" * 10  # the next try reads afresh


def test_readpage_error_after_some_pages_gives_a_short_read(
    machine: Machine, tmp_path: Path
) -> None:
    f = machine.open(make_file(tmp_path / "f", b"a" * PGSIZE + b"b" * PGSIZE), "r")
    f.pread(1, 0)  # page 0 cached
    f.inode.faults.fail("read", 1)
    assert f.pread(2 * PGSIZE, 0) == b"a" * PGSIZE
    assert_clean(machine)


def test_write_whose_page_cannot_be_read_changes_nothing(machine: Machine, tmp_path: Path) -> None:
    path = make_file(tmp_path / "f", b"a" * 100)
    f = machine.open(path, "r+")
    f.inode.faults.fail("read", 1)
    expect_error(errno.EIO, lambda: f.pwrite(b"b" * 10, 50))
    assert f.size == 100 and f.mapping.nr_pages == 0
    assert f.pread(100, 0) == b"a" * 100
    assert_clean(machine)


def test_failed_fsync_leaves_the_page_dirty_and_cached(machine: Machine, tmp_path: Path) -> None:
    path = make_file(tmp_path / "f", b"a" * 2 * PGSIZE)
    f = machine.open(path, "r+")
    f.pwrite(b"b" * 2 * PGSIZE, 0)
    f.inode.faults.fail("write", 1)
    expect_error(errno.EIO, f.fsync)
    # The other page was still tried and written; the failed one waits.
    assert f.mapping.nr_pages == 2
    assert [is_dirty(f, 0), is_dirty(f, 1)] == [True, False]
    assert path.read_bytes() == b"a" * PGSIZE + b"b" * PGSIZE
    assert_clean(machine)
    f.fsync()
    assert path.read_bytes() == b"b" * 2 * PGSIZE


def test_failed_writeback_during_removal_keeps_the_page(machine: Machine, tmp_path: Path) -> None:
    path = make_file(tmp_path / "f", b"a" * 3 * PGSIZE)
    f = machine.open(path, "r+")
    f.pwrite(b"b" * 3 * PGSIZE, 0)
    f.inode.faults.fail("write", 1)
    expect_error(errno.EIO, lambda: f.mapping.remove_contig(0, ALL))
    assert f.mapping.nr_pages == 1, "only the page whose write failed stays"
    (kept,) = [i for i in range(3) if f.mapping.tree.lookup_slot(i) is not None]
    assert is_dirty(f, kept)
    assert_clean(machine)
    assert f.pread(ALL, 0) == b"b" * 3 * PGSIZE  # nothing lost
    assert f.mapping.remove_contig(0, ALL) == 3  # (two were read back in)
    assert path.read_bytes() == b"b" * 3 * PGSIZE


def test_failed_host_truncate_changes_nothing(machine: Machine, tmp_path: Path) -> None:
    path = make_file(tmp_path / "f", b"a" * 3 * PGSIZE)
    f = machine.open(path, "r+")
    f.pwrite(b"b" * 3 * PGSIZE, 0)
    f.inode.faults.fail("truncate", 1)
    expect_error(errno.EIO, lambda: f.truncate(10))
    assert f.size == 3 * PGSIZE and f.mapping.nr_pages == 3
    assert f.pread(ALL, 0) == b"b" * 3 * PGSIZE
    assert os.path.getsize(path) == 3 * PGSIZE
    assert_clean(machine)


def test_failed_host_fsync_is_eio_after_the_pages_are_written(
    machine: Machine, tmp_path: Path
) -> None:
    path = make_file(tmp_path / "f", b"")
    f = machine.open(path, "r+")
    f.pwrite(b"b" * 10, 0)
    f.inode.faults.fail("sync", 1)
    expect_error(errno.EIO, f.fsync)
    assert path.read_bytes() == b"b" * 10
    f.fsync()


def test_a_file_whose_host_descriptor_is_closed_is_ebadf(machine: Machine, tmp_path: Path) -> None:
    f = machine.open(make_file(tmp_path / "f", b"a"), "r+")
    f.pwrite(b"b", 0)
    f.inode.io.close()  # as Machine.close() does
    expect_error(errno.EBADF, f.fsync)
    expect_error(errno.EBADF, f.mapping.writeback, 0, 1)  # the descriptor itself says so
    assert is_dirty(f, 0)
