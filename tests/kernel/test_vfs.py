"""Files over host files: generic read and write through the page map, and
truncate.  One task at a time here; races are in test_vfs_races.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pagemap import PG_DIRTY, PGSIZE, File, Machine, OutOfMemory
from tests.conftest import CountingOps, sim

ALL = 1 << 30  # "every page" for remove_contig / writeback


def make_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def page_flags(f: File, index: int) -> int:
    page = f.mapping.load_page(index)
    try:
        return page.flags.load()
    finally:
        f.mapping.put_page(page)


def cached_bytes(f: File, index: int) -> bytes:
    page = f.mapping.load_page(index)
    try:
        return bytes(page.data)
    finally:
        f.mapping.put_page(page)


@pytest.fixture
def machine() -> Machine:
    return sim(0, frames=16)


# -- reads ----------------------------------------------------------------------


def test_read_stops_at_end_of_file(machine: Machine, tmp_path: Path) -> None:
    data = bytes(range(256)) * 20  # 5120 bytes: a page and a bit
    f = machine.open(make_file(tmp_path / "f", data), "r")
    assert f.size == len(data)
    assert f.pread(100, 0) == data[:100]
    assert f.pread(1000, 5000) == data[5000:]  # short: stops at the end
    assert f.pread(10, len(data)) == b""
    assert f.pread(10, len(data) + 5 * PGSIZE) == b""
    assert f.pread(len(data) * 2, 0) == data
    assert f.pread(0, 17) == b""


def test_readpage_zero_fills_past_the_host_files_end(machine: Machine, tmp_path: Path) -> None:
    data = b"z" * 5000
    f = machine.open(make_file(tmp_path / "f", data), "r")
    assert cached_bytes(f, 1) == b"z" * (5000 - PGSIZE) + bytes(2 * PGSIZE - 5000)


def test_write_past_the_end_grows_the_file_and_the_gap_reads_as_zeros(
    machine: Machine, tmp_path: Path
) -> None:
    f = machine.open(make_file(tmp_path / "f", b"abc"), "r+")
    assert f.pwrite(b"XYZ", 3 * PGSIZE + 10) == 3
    assert f.size == 3 * PGSIZE + 13
    got = f.pread(f.size, 0)
    assert got == b"abc" + bytes(3 * PGSIZE + 7) + b"XYZ"


def test_a_written_page_is_marked_dirty(machine: Machine, tmp_path: Path) -> None:
    f = machine.open(make_file(tmp_path / "f", b"a" * 3 * PGSIZE), "r+")
    f.pread(3 * PGSIZE, 0)  # all three pages cached, clean
    assert [page_flags(f, i) & PG_DIRTY for i in range(3)] == [0, 0, 0]
    f.pwrite(b"b" * (PGSIZE + 2), PGSIZE - 1)  # touches all three
    assert all(page_flags(f, i) & PG_DIRTY for i in range(3))


@pytest.mark.parametrize("how", ["fsync", "writeback", "remove_contig"])
def test_nothing_reaches_the_host_until_written_back(
    machine: Machine, tmp_path: Path, how: str
) -> None:
    path = make_file(tmp_path / "f", b"a" * 6000)
    f = machine.open(path, "r+")
    f.pwrite(b"B" * 3000, 4000)  # across the page boundary and past the end
    f.pwrite(b"C" * 10, 100)
    assert path.read_bytes() == b"a" * 6000, "a write reached the host before writeback"
    expect = b"a" * 100 + b"C" * 10 + b"a" * 3890 + b"B" * 3000
    if how == "fsync":
        f.fsync()
    elif how == "writeback":
        assert f.mapping.writeback(0, ALL) == 2
    else:
        assert f.mapping.remove_contig(0, ALL) == 2
        assert f.mapping.nr_pages == 0
    assert path.read_bytes() == expect
    assert f.pread(ALL, 0) == expect
    if how != "remove_contig":
        assert not page_flags(f, 0) & PG_DIRTY
        assert not page_flags(f, 1) & PG_DIRTY
    assert machine.check_quiescent() == []


def test_writepage_never_writes_past_the_size(machine: Machine, tmp_path: Path) -> None:
    path = make_file(tmp_path / "f", b"a" * 5000)
    f = machine.open(path, "r+")
    f.pwrite(b"b", 0)
    # Bytes past the end in the cached last page, as a store through a
    # mapping would leave them: writeback must not send them to the host.
    page = f.mapping.load_page(1)
    page.data[5000 - PGSIZE :] = b"J" * (2 * PGSIZE - 5000)
    page.flags.fetch_or(PG_DIRTY)
    f.mapping.put_page(page)
    f.fsync()
    assert path.read_bytes() == b"b" + b"a" * 4999
    f.pwrite(b"c" * 10, 6000)
    f.fsync()
    assert os.path.getsize(path) == 6010
    assert path.read_bytes()[5000:6000] == bytes(1000), "bytes past the old end leaked out"


def test_a_write_larger_than_memory_reclaims_as_it_goes(tmp_path: Path) -> None:
    machine = sim(0, frames=2)
    path = make_file(tmp_path / "f", b"")
    f = machine.open(path, "r+")
    assert f.pwrite(b"w" * 3 * PGSIZE, 0) == 3 * PGSIZE  # two frames, three pages
    assert machine.reclaim.stats.reclaimed >= 1
    f.fsync()
    assert path.read_bytes() == b"w" * 3 * PGSIZE
    assert machine.check_quiescent() == []


def test_a_write_fails_whole_when_no_frame_can_be_freed(tmp_path: Path) -> None:
    machine = sim(0, frames=2)
    path = make_file(tmp_path / "f", b"")
    f = machine.open(path, "r+")
    other = machine.page_map(CountingOps())
    held = [other.load_page(0), other.load_page(1)]  # in use: reclaim may not take them
    with pytest.raises(OutOfMemory):  # nothing can be written: no change at all
        f.pwrite(b"x", 0)
    assert f.size == 0
    for page in held:
        other.put_page(page)
    assert f.pwrite(b"x", 0) == 1
    f.fsync()
    assert path.read_bytes() == b"x"
    assert machine.check_quiescent() == []


# -- opening --------------------------------------------------------------------


def test_opening_a_file_twice_shares_its_inode_and_page_map(
    machine: Machine, tmp_path: Path
) -> None:
    path = make_file(tmp_path / "f", b"q" * 100)
    os.symlink(path, tmp_path / "link")
    a = machine.open(path, "r+")
    b = machine.open(tmp_path / "link", "r")
    other = machine.open(make_file(tmp_path / "g", b""), "r")
    assert a.inode is b.inode and a.mapping is b.mapping
    assert other.inode is not a.inode
    a.pwrite(b"new", 0)
    assert b.pread(5, 0) == b"newqq"  # one cache: b sees a's unwritten bytes
    assert len(machine.hostfs.inodes) == 2


def test_w_plus_creates_or_empties_the_file(machine: Machine, tmp_path: Path) -> None:
    fresh = machine.open(tmp_path / "new", "w+")
    assert fresh.size == 0 and (tmp_path / "new").exists()
    path = make_file(tmp_path / "f", b"old" * 3000)
    keep = machine.open(path, "r")
    keep.pread(10, 0)  # cached
    emptied = machine.open(path, "w+")
    assert emptied.size == 0 and keep.size == 0
    assert emptied.mapping.nr_pages == 0
    assert keep.pread(10, 0) == b""
    assert path.read_bytes() == b""


def test_close_keeps_the_cache_and_refuses_further_use(machine: Machine, tmp_path: Path) -> None:
    path = make_file(tmp_path / "f", b"a" * 10)
    with machine.open(path, "r+") as f:
        f.pwrite(b"b", 0)
    assert f.closed
    f.close()  # twice is harmless
    assert f.inode.open_count.load() == 0
    for call in (lambda: f.pread(1, 0), lambda: f.pwrite(b"x", 0), f.fsync):
        with pytest.raises(OSError) as err:
            call()
        assert err.value.errno == 9  # EBADF
    assert path.read_bytes() == b"a" * 10  # close wrote nothing back
    again = machine.open(path, "r")
    assert again.pread(2, 0) == b"ba"  # the cached, dirty page is still there
    again.fsync()
    assert path.read_bytes() == b"b" + b"a" * 9


# -- truncate -------------------------------------------------------------------


def test_truncate_shrinks_dropping_pages_and_zeroing_the_last(
    machine: Machine, tmp_path: Path
) -> None:
    path = make_file(tmp_path / "f", b"")
    f = machine.open(path, "r+")
    f.pwrite(b"a" * 4 * PGSIZE, 0)
    assert f.mapping.nr_pages == 4
    f.truncate(5000)
    assert f.size == 5000
    assert f.mapping.nr_pages == 2, "pages wholly past the new end stayed cached"
    assert cached_bytes(f, 1) == b"a" * (5000 - PGSIZE) + bytes(2 * PGSIZE - 5000)
    assert os.path.getsize(path) == 5000
    assert f.pread(ALL, 0) == b"a" * 5000
    f.fsync()
    assert path.read_bytes() == b"a" * 5000
    assert machine.check_quiescent() == []


def test_truncate_to_a_page_boundary_and_to_zero(machine: Machine, tmp_path: Path) -> None:
    f = machine.open(make_file(tmp_path / "f", b"a" * 3 * PGSIZE), "r+")
    f.pread(ALL, 0)
    f.truncate(PGSIZE)
    assert f.mapping.nr_pages == 1
    assert cached_bytes(f, 0) == b"a" * PGSIZE
    f.truncate(0)
    assert f.mapping.nr_pages == 0 and f.size == 0
    assert f.pread(10, 0) == b""


def test_truncate_grows_with_zeros(machine: Machine, tmp_path: Path) -> None:
    path = make_file(tmp_path / "f", b"a" * 100)
    f = machine.open(path, "r+")
    f.truncate(3 * PGSIZE)
    assert f.size == 3 * PGSIZE
    assert f.pread(ALL, 0) == b"a" * 100 + bytes(3 * PGSIZE - 100)
    f.fsync()
    assert path.read_bytes() == b"a" * 100 + bytes(3 * PGSIZE - 100)


@pytest.mark.parametrize("then", ["read", "evict", "fsync", "write_beyond"])
def test_old_bytes_never_come_back_after_truncate(
    machine: Machine, tmp_path: Path, then: str
) -> None:
    path = make_file(tmp_path / "f", b"a" * 3 * PGSIZE)
    f = machine.open(path, "r+")
    f.pwrite(b"b" * 3 * PGSIZE, 0)  # dirty, in the cache only
    f.truncate(1000)
    if then == "evict":
        f.mapping.remove_contig(0, ALL)
    elif then == "fsync":
        f.fsync()
    elif then == "write_beyond":
        f.pwrite(b"c", 3 * PGSIZE - 1)
    if then != "write_beyond":
        f.truncate(3 * PGSIZE)
    expect = b"b" * 1000 + bytes(3 * PGSIZE - 1001)
    expect += b"c" if then == "write_beyond" else b"\0"
    assert f.pread(ALL, 0) == expect
    f.fsync()
    assert path.read_bytes() == expect
    f.mapping.remove_contig(0, ALL)
    assert f.pread(ALL, 0) == expect


@pytest.mark.parametrize("grow", ["truncate", "pwrite"])
def test_growing_zeroes_what_a_store_left_past_the_end(
    machine: Machine, tmp_path: Path, grow: str
) -> None:
    f = machine.open(make_file(tmp_path / "f", b"a" * 100), "r+")
    page = f.mapping.load_page(0)
    page.data[100:200] = b"J" * 100  # as a store through a shared mapping could
    f.mapping.put_page(page)
    if grow == "truncate":
        f.truncate(300)
    else:
        f.pwrite(b"w", 299)
    assert f.pread(300, 0)[100:299] == bytes(199)
