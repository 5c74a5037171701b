"""Writeback errors reported once per open file, as Linux's errseq_t
(kernel/errseq.py): the issue's table, one test a row.

    two files on one inode        each hears of the error once
    error before open             a later open hears of it if nobody has yet
    error after open              the open file hears of it
    evicted page                  under "clean", the data is gone and fsync says so
    second fsync clean            an error is reported once per file
    error from the flusher        nobody's fsync met it, every file hears of it
    ENOSPC kept                   the errno recorded is the host's
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest

from pagemap import PGSIZE, Machine
from pagemap.kernel.errors import KernelError
from pagemap.kernel.errseq import ERRSEQ_CTR_INC, ERRSEQ_SEEN, MAX_ERRNO
from pagemap.kernel.flusher import Flusher
from pagemap.kernel.hostfs import HostFile
from pagemap.kernel.mman import MAP_SHARED, PROT_RW


@pytest.fixture
def machine() -> Iterator[Machine]:
    m = Machine(cores=1, memory="1MiB")
    yield m
    m.close()


def two_files(machine: Machine, tmp_path: Path) -> tuple[HostFile, HostFile]:
    path = tmp_path / "f"
    path.write_bytes(bytes(2 * PGSIZE))
    return machine.open(path, "r+"), machine.open(path, "r+")


def fsync_errno(f: HostFile) -> int:
    """0 if f.fsync() returned; the errno it raised otherwise."""
    try:
        f.fsync()
    except KernelError as exc:
        assert exc.errno is not None
        return exc.errno
    return 0


def fail_next_write(f: HostFile, effect: str = "eio") -> None:
    f.pwrite(b"x" * 100, 0)
    f.faults.fail("write", 1, effect)


def test_two_files_on_one_inode_each_hear_of_the_error_once(
    machine: Machine, tmp_path: Path
) -> None:
    a, b = two_files(machine, tmp_path)
    assert a.inode is b.inode
    fail_next_write(a)
    assert fsync_errno(a) == errno.EIO  # its own writeback failed
    assert fsync_errno(b) == errno.EIO  # and b's fsync, which wrote the page, still says so
    assert fsync_errno(a) == 0
    assert fsync_errno(b) == 0


def test_an_error_nobody_saw_reaches_a_later_open(machine: Machine, tmp_path: Path) -> None:
    a, _ = two_files(machine, tmp_path)
    fail_next_write(a)
    with pytest.raises(KernelError):
        a.inode.fsync()  # the inode's writeback fails; no file has looked yet
    late = machine.open(tmp_path / "f", "r")
    assert fsync_errno(late) == errno.EIO  # Linux 4.17: an unseen error is reported
    assert fsync_errno(a) == errno.EIO
    later = machine.open(tmp_path / "f", "r")
    assert fsync_errno(later) == 0  # seen by now: a file opened after hears nothing


def test_an_error_after_open_is_reported(machine: Machine, tmp_path: Path) -> None:
    a, b = two_files(machine, tmp_path)
    assert fsync_errno(b) == 0
    fail_next_write(a)
    assert fsync_errno(a) == errno.EIO
    c = machine.open(tmp_path / "f", "r")
    assert fsync_errno(c) == 0  # opened after a saw it
    assert fsync_errno(b) == errno.EIO


@pytest.mark.parametrize("mode", ["keep", "clean"])
def test_an_evicted_page_whose_writeback_failed(
    machine: Machine, tmp_path: Path, mode: str
) -> None:
    a, b = two_files(machine, tmp_path)
    a.mapping.wb_err.set_failed_page(mode)
    fail_next_write(a)
    with pytest.raises(KernelError):
        a.mapping.remove_contig(0, 2)  # page 1 goes; page 0's write fails, it stays
    assert a.mapping.nr_pages == 1
    if mode == "clean":
        # Linux's: the page was marked clean; the next removal evicts it and its data.
        assert a.mapping.remove_contig(0, 2) == 1
        assert (tmp_path / "f").read_bytes()[:100] == bytes(100)
    else:
        # Kept dirty: the next removal writes it, and nothing is lost.
        assert a.mapping.remove_contig(0, 2) == 1
        assert (tmp_path / "f").read_bytes()[:100] == b"x" * 100
    # Either way the failure was recorded; each file hears of it once.
    assert fsync_errno(a) == errno.EIO
    assert fsync_errno(b) == errno.EIO
    assert fsync_errno(a) == fsync_errno(b) == 0


def test_a_second_fsync_is_clean(machine: Machine, tmp_path: Path) -> None:
    a, _ = two_files(machine, tmp_path)
    fail_next_write(a)
    assert fsync_errno(a) == errno.EIO
    assert fsync_errno(a) == 0
    assert (tmp_path / "f").read_bytes()[:100] == b"x" * 100  # kept dirty, written now


def test_an_error_from_the_flusher_reaches_every_file(machine: Machine, tmp_path: Path) -> None:
    a, b = two_files(machine, tmp_path)
    a.mapping.wb_err.set_failed_page("clean")
    fail_next_write(a)
    flusher = Flusher(machine.executor, machine.allocator, machine.reclaim, machine.page_maps, 1)
    assert flusher.writeback_round() == 0  # marks the page found dirty (PG_AGED)
    assert flusher.writeback_round() == 0  # its write fails; the flusher keeps the error
    assert [e.errno for e in flusher.stats.errors] == [errno.EIO]
    # The page is clean now: nobody's writeback will meet the failure again,
    # yet each file's fsync reports it (fsyncgate: before 4.13 only one did).
    assert fsync_errno(a) == errno.EIO
    assert fsync_errno(b) == errno.EIO
    assert (tmp_path / "f").read_bytes()[:100] == bytes(100)


@pytest.mark.parametrize("effect", ["enospc", "short", "zero"])
def test_enospc_is_kept(machine: Machine, tmp_path: Path, effect: str) -> None:
    a, b = two_files(machine, tmp_path)
    fail_next_write(a, effect)
    assert fsync_errno(a) == errno.ENOSPC
    assert fsync_errno(b) == errno.ENOSPC


def test_the_latest_errno_is_reported(machine: Machine, tmp_path: Path) -> None:
    a, b = two_files(machine, tmp_path)
    fail_next_write(a, "enospc")
    assert fsync_errno(a) == errno.ENOSPC
    a.pwrite(b"y", 0)
    a.faults.fail("write", 1, "eio")
    assert fsync_errno(a) == errno.EIO
    assert fsync_errno(b) == errno.EIO  # two errors since b looked: the latest


def test_msync_reports_an_error_the_flusher_met(machine: Machine, tmp_path: Path) -> None:
    a, b = two_files(machine, tmp_path)
    proc = machine.process()
    base = proc.mmap(2 * PGSIZE, PROT_RW, MAP_SHARED, b, 0)
    fail_next_write(a)
    a.mapping.wb_err.set_failed_page("clean")
    with pytest.raises(KernelError):
        a.mapping.writeback(0, 2)
    with pytest.raises(KernelError) as info:
        proc.msync(base, 2 * PGSIZE)
    assert info.value.errno == errno.EIO
    proc.msync(base, 2 * PGSIZE)  # reported once
    assert fsync_errno(a) == errno.EIO


def test_before_4_13_one_flag_is_cleared_by_whoever_looks_first(
    machine: Machine, tmp_path: Path
) -> None:
    """per_file off: the AS_EIO flag of old; b never hears (fsyncgate)."""
    a, b = two_files(machine, tmp_path)
    a.mapping.wb_err.per_file = False
    a.mapping.wb_err.set_failed_page("clean")
    fail_next_write(a)
    with pytest.raises(KernelError):
        a.mapping.writeback(0, 2)  # the flusher's part
    assert fsync_errno(a) == errno.EIO
    assert fsync_errno(b) == 0  # the bug: the data is gone and b's fsync says all is well


def test_the_word_keeps_errno_seen_and_counter(machine: Machine, tmp_path: Path) -> None:
    a, _ = two_files(machine, tmp_path)
    wb = a.mapping.wb_err
    assert wb.word.value == 0
    fail_next_write(a)
    with pytest.raises(KernelError):
        a.inode.fsync()
    assert wb.word.value == errno.EIO  # unseen, counter 0
    assert fsync_errno(a) == errno.EIO
    assert wb.word.value == errno.EIO | ERRSEQ_SEEN
    a.pwrite(b"z", 0)
    a.faults.fail("write", 1, "enospc")
    with pytest.raises(KernelError):
        a.inode.fsync()
    assert wb.word.value == errno.ENOSPC + ERRSEQ_CTR_INC  # seen before: a new error
    assert wb.word.value & MAX_ERRNO == errno.ENOSPC


def test_a_bad_failed_page_mode_is_a_value_error(machine: Machine, tmp_path: Path) -> None:
    a, _ = two_files(machine, tmp_path)
    with pytest.raises(ValueError, match="keep"):
        a.mapping.wb_err.set_failed_page("drop")
