"""Images made by mke2fs -d from random trees read back exactly through the
driver, at every block size, every indirection depth, holes and long
directories included; a rw mount and unmount leaves e2fsck clean."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from pagemap import e2fsprogs
from tests.kernel.fs.ext2.util import compare, depth_offsets, mounted, random_tree


@pytest.mark.parametrize("bs", [1024, 2048, 4096])
@pytest.mark.parametrize("seed", range(3))
def test_random_tree_reads_back_byte_for_byte(tmp_path: Path, bs: int, seed: int) -> None:
    rng = random.Random(f"readback:{bs}:{seed}")
    src = tmp_path / "src"
    src.mkdir()
    sparse = random_tree(rng, src, bs)
    image = tmp_path / "fs.img"
    e2fsprogs.mkfs(image, 24 << 20, bs, source=src)
    machine, fs = mounted(image, "r")
    assert compare(fs, src, sparse) > 60
    fs.unmount()
    assert machine.check_quiescent() == []
    # Mounting read-write and unmounting changes nothing e2fsck minds.
    machine, fs = mounted(image, "rw")
    assert compare(fs, src, sparse) > 60
    fs.unmount()
    assert machine.check_quiescent() == []
    result = e2fsprogs.fsck(image)
    assert result.clean, result.output


@pytest.mark.parametrize("bs", [1024, 4096])
def test_every_depth_is_mapped_where_debugfs_says(tmp_path: Path, bs: int) -> None:
    """The driver's block map agrees with debugfs's for a block in each of
    the direct, single, double and triple indirect ranges."""
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "deep", "wb") as out:
        for i, off in enumerate(depth_offsets(bs)):
            out.seek(off)
            out.write(bytes([65 + i]) * 10)
    image = tmp_path / "fs.img"
    e2fsprogs.mkfs(image, 8 << 20, bs, source=src)
    _, fs = mounted(image, "r")
    with fs.open("/deep") as f:
        inode = f.inode
        for i, off in enumerate(depth_offsets(bs)):
            n = off // bs
            blk = inode.bmap.lookup(n)
            assert blk, f"file block {n} is mapped"
            told = e2fsprogs.debugfs(image, f"bmap /deep {n}").decode().strip()
            assert int(told) == blk
            assert f.pread(10, off) == bytes([65 + i]) * 10
            assert inode.bmap.lookup(n + 1) == 0  # a hole right after
    fs.unmount()
