"""page_mkwrite on ext2: under write-protect tracking a store through a shared
mapping over a hole allocates the page's blocks at its first store (Linux's
block_page_mkwrite), not at writeback; the image is e2fsck clean after."""

from __future__ import annotations

from pathlib import Path

import pytest

from pagemap import MAP_SHARED, PGSIZE, PROT_READ, PROT_WRITE
from pagemap import e2fsprogs as e2
from pagemap.kernel.errors import BusError
from pagemap.kernel.fs.ext2.errors import NoSpace

from .test_fs import done, fresh

RW = PROT_READ | PROT_WRITE


def test_the_first_store_allocates_the_holes_blocks_under_wp(tmp_path: Path) -> None:
    image, machine, fs = fresh(tmp_path, dirty_tracking="wp")
    holey = fs.create("/holey")
    holey.truncate(4 * PGSIZE)
    proc = machine.process()
    addr = proc.mmap(4 * PGSIZE, RW, MAP_SHARED, holey, 0)
    assert fs.stat("/holey").blocks == 0
    assert proc.load(addr + PGSIZE, 4) == bytes(4)  # a read fault allocates nothing
    assert fs.stat("/holey").blocks == 0
    proc.store(addr + PGSIZE + 5, b"kept")  # the write fault: page_mkwrite
    after_first = fs.stat("/holey").blocks
    assert after_first == PGSIZE // 512  # i_blocks counts 512-byte sectors: the page's 4 blocks
    proc.store(addr + PGSIZE + 100, b"more")  # the PTE is writable now: no fault
    assert fs.stat("/holey").blocks == after_first
    proc.store(addr + 3 * PGSIZE, b"last")  # another page, past the direct blocks
    both = fs.stat("/holey").blocks
    assert both == 2 * after_first + 1024 // 512  # and the indirect block that maps it
    proc.msync(addr, 4 * PGSIZE)
    proc.store(addr + PGSIZE + 9, b"again")  # written back and write-protected: faults again
    assert fs.stat("/holey").blocks == both  # its blocks exist already
    proc.exit()
    holey.close()
    done(image, machine, fs)
    data = e2.cat(image, "/holey")
    assert data[PGSIZE + 5 : PGSIZE + 14] == b"keptagain"
    assert data[3 * PGSIZE : 3 * PGSIZE + 4] == b"last" and len(data) == 4 * PGSIZE


def test_under_dbit_the_blocks_come_at_writeback(tmp_path: Path) -> None:
    image, machine, fs = fresh(tmp_path, dirty_tracking="dbit")
    holey = fs.create("/holey")
    holey.truncate(4 * PGSIZE)
    proc = machine.process()
    addr = proc.mmap(4 * PGSIZE, RW, MAP_SHARED, holey, 0)
    proc.store(addr + PGSIZE + 5, b"kept")
    assert fs.stat("/holey").blocks == 0
    holey.fsync()
    assert fs.stat("/holey").blocks > 0
    proc.exit()
    holey.close()
    done(image, machine, fs)
    assert e2.cat(image, "/holey")[PGSIZE + 5 : PGSIZE + 9] == b"kept"


def test_a_store_into_a_hole_on_a_full_filesystem_is_a_bus_error_under_wp(
    tmp_path: Path,
) -> None:
    """No block for the page: the store is SIGBUS, as Linux's ext2 answers
    ENOSPC in page_mkwrite; nothing is locked or leaked, and once space is
    freed the same store goes through."""
    image, machine, fs = fresh(tmp_path, size=1 << 20, dirty_tracking="wp")
    holey = fs.create("/holey")
    holey.truncate(4 * PGSIZE)
    with fs.create("/fill") as f:
        while True:
            try:
                f.pwrite(b"x" * 65536, f.size)
            except NoSpace:
                break
    proc = machine.process()
    addr = proc.mmap(4 * PGSIZE, RW, MAP_SHARED, holey, 0)
    with pytest.raises(BusError, match="SIGBUS"):
        proc.store(addr + PGSIZE + 5, b"kept")
    assert machine.check_quiescent() == []
    fs.unlink("/fill")
    proc.store(addr + PGSIZE + 5, b"kept")
    assert fs.stat("/holey").blocks > 0
    proc.exit()
    holey.close()
    done(image, machine, fs)
    assert e2.cat(image, "/holey")[PGSIZE + 5 : PGSIZE + 9] == b"kept"
