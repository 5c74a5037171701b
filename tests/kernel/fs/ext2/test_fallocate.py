"""fallocate on ext2 (an extension: Linux's ext2 has none; fs/ext2/punch.py):
a punched hole reads as zeros, its whole pages' blocks go back to the
filesystem, its partial pages are zeroed, and e2fsck finds the image clean;
allocation grows the file with zeros."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from pagemap import MAP_SHARED, PGSIZE, PROT_READ, PROT_WRITE, Machine
from pagemap import e2fsprogs as e2
from pagemap.kernel.errors import KernelError
from pagemap.kernel.fallocate import FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, PUNCH
from pagemap.kernel.fs.ext2 import Ext2FS

PAGES = 40  # past the 12 direct blocks with 1 KiB blocks: indirect blocks too
DATA = bytes((i * 13 + 5) % 251 for i in range(PAGES * PGSIZE))


def fresh(tmp_path: Path, bs: int) -> tuple[Path, Machine, Ext2FS]:
    image = tmp_path / "fs.img"
    e2.mkfs(image, 4 << 20, bs)
    machine = Machine(cores=2, memory="4MiB")
    return image, machine, machine.mount(image, "rw")


def done(image: Path, machine: Machine, fs: Ext2FS) -> None:
    fs.unmount()
    assert machine.check_quiescent() == []
    result = e2.fsck(image)
    assert result.clean, result.output
    machine.close()


def punched(offset: int, length: int) -> bytes:
    end = min(offset + length, len(DATA))
    return DATA[:offset] + bytes(max(0, end - offset)) + DATA[end:]


@pytest.mark.parametrize("bs", [1024, 4096])
@pytest.mark.parametrize(
    ("offset", "length"),
    [
        (PGSIZE, 3 * PGSIZE),  # whole pages
        (100, 5 * PGSIZE),  # partial, whole, partial
        (20 * PGSIZE + 7, 300),  # inside one page
        (30 * PGSIZE, 100 * PGSIZE),  # to past the end
    ],
)
def test_a_punched_hole_on_ext2(tmp_path: Path, bs: int, offset: int, length: int) -> None:
    image, machine, fs = fresh(tmp_path, bs)
    f = fs.create("/f")
    f.pwrite(DATA, 0)
    f.fsync()
    free = fs.vol.alloc.nr_free_blocks
    proc = machine.process()
    base = proc.mmap(PAGES * PGSIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0)
    assert proc.load(base + offset, 16) == DATA[offset : offset + 16]  # mapped and cached
    f.fallocate(PUNCH, offset, length)
    want = punched(offset, length)
    assert f.size == len(DATA)
    assert f.pread(len(DATA), 0) == want
    assert proc.load(base, PAGES * PGSIZE) == want
    whole = max(0, min(offset + length, len(DATA)) // PGSIZE - -(-offset // PGSIZE))
    f.fsync()
    # The blocks of the whole pages are free again (indirect blocks stay).
    assert fs.vol.alloc.nr_free_blocks == free + whole * (PGSIZE // bs)
    proc.exit()
    f.close()
    done(image, machine, fs)
    assert e2.cat(image, "/f") == want


def test_writing_into_a_punched_hole_allocates_again(tmp_path: Path) -> None:
    image, machine, fs = fresh(tmp_path, 1024)
    f = fs.create("/f")
    f.pwrite(DATA, 0)
    f.fallocate(PUNCH, 2 * PGSIZE, 4 * PGSIZE)
    f.pwrite(b"back", 3 * PGSIZE + 10)
    f.fsync()
    f.close()
    want = bytearray(punched(2 * PGSIZE, 4 * PGSIZE))
    want[3 * PGSIZE + 10 : 3 * PGSIZE + 14] = b"back"
    done(image, machine, fs)
    assert e2.cat(image, "/f") == bytes(want)


def test_allocation_on_ext2(tmp_path: Path) -> None:
    image, machine, fs = fresh(tmp_path, 1024)
    f = fs.create("/f")
    f.pwrite(b"abc", 0)
    free = fs.vol.alloc.nr_free_blocks
    f.fallocate(FALLOC_FL_KEEP_SIZE, 0, 10 * PGSIZE)  # only below the size on ext2
    assert f.size == 3
    f.fallocate(0, 0, 3 * PGSIZE)
    assert f.size == 3 * PGSIZE
    assert fs.vol.alloc.nr_free_blocks == free - 11  # 12 blocks of 1 KiB, 1 was there
    assert f.pread(3 * PGSIZE, 0) == b"abc" + bytes(3 * PGSIZE - 3)
    f.fsync()
    f.close()
    done(image, machine, fs)
    assert e2.cat(image, "/f") == b"abc" + bytes(3 * PGSIZE - 3)


def test_linuxs_errors_on_ext2(tmp_path: Path) -> None:
    image, machine, fs = fresh(tmp_path, 1024)
    f = fs.create("/f")
    for mode, off, n, code in (
        (FALLOC_FL_PUNCH_HOLE, 0, 10, errno.EOPNOTSUPP),
        (PUNCH, 0, 0, errno.EINVAL),
        (PUNCH, -1, 10, errno.EINVAL),
    ):
        with pytest.raises(KernelError) as info:
            f.fallocate(mode, off, n)
        assert info.value.errno == code
    r = fs.open("/f", "r")
    with pytest.raises(KernelError) as info:
        r.fallocate(PUNCH, 0, 10)
    assert info.value.errno == errno.EBADF
    r.close()
    f.close()
    done(image, machine, fs)


def test_allocation_that_fills_the_filesystem_is_enospc_and_leaks_nothing(tmp_path: Path) -> None:
    image = tmp_path / "fs.img"
    e2.mkfs(image, 1 << 20, 1024)
    machine = Machine(cores=2, memory="4MiB")
    fs = machine.mount(image, "rw")
    free = fs.statfs().blocks_free
    f = fs.create("/f")
    f.pwrite(b"x" * 10, 0)
    with pytest.raises(KernelError) as info:
        f.fallocate(0, 0, 4 << 20)  # more than the whole filesystem
    assert info.value.errno == errno.ENOSPC
    assert f.size == 10  # not grown
    assert f.pread(20, 0) == b"x" * 10
    f.fsync()
    assert fs.statfs().blocks_free == free - 1  # the blocks past the size went back
    f.close()
    done(image, machine, fs)
