"""fallocate on ext2: hole punching and allocation (an extension: Linux's
ext2 has no fallocate at all and answers EOPNOTSUPP; ours does what ext4
does, at the page's grain).

Punching (kernel/fallocate.py has already zeroed the partial pages at the
hole's edges, dirty, and dropped its whole pages from the cache, with the
mapping's invalidate lock held exclusive): every data block under the whole
pages of the hole is unhooked from the block map and freed.  Blocks under
the partial pages stay allocated; their bytes in the hole are zeros, which
the dirty page writes back (with 4 KiB blocks a partial page is a partial
block, as ext4 has it; with smaller blocks, the whole blocks inside a
partial page are zeroed, not freed).  Indirect blocks stay, even when every
entry in them is now zero: e2fsck accepts such a block, and the next
truncate past them frees them.

Allocation (mode 0 or FALLOC_FL_KEEP_SIZE) allocates the blocks of the range
as write() does (fresh: they read as zeros until written), but only below
the file's size with KEEP_SIZE: an ext2 inode may own no block past its
size (e2fsck's rule, and the driver's trim relies on it).

Rules: called with the inode's i_rwsem held (Inode.fallocate); the block map
lock is taken per block unhooked (bmap.py's rules); no page of the hole is
cached, so no writepage can name a block being freed.
"""

from __future__ import annotations

from typing import Protocol

from pagemap.hw.memory import PGSIZE
from pagemap.kernel.blockdev import BufferHead
from pagemap.kernel.fs.ext2.bmap import BlockMap, block_path
from pagemap.kernel.fs.ext2.errors import NoSpace, TooBig
from pagemap.kernel.fs.ext2.layout import put_u32
from pagemap.kernel.fs.ext2.volume import Volume
from pagemap.sync.atomic import AtomicWord
from pagemap.sync.core import WRITE


class Ext2Inode(Protocol):
    """What fallocate uses of an ext2 inode (inode.py's Ext2Inode, which
    imports this module: the inode calls in, so it is named by shape here)."""

    vol: Volume
    name: str
    ino: int
    size_word: AtomicWord
    bmap: BlockMap
    dirty: bool

    def touch(self, mtime: bool = True) -> None: ...

    def _zero_tail(self, size: int) -> None: ...

    def _allocate_range(self, offset: int, length: int) -> int: ...

    def _free_past(self, size: int) -> None: ...


def punch_blocks(bmap: BlockMap, first: int, count: int) -> int:
    """Unhook and free the data blocks of file blocks [first, first + count);
    how many were freed (holes are passed over)."""
    apb = bmap.geo.addr_per_block
    freed: list[int] = []
    try:
        for n in range(first, first + count):
            path = block_path(n, apb)
            held: list[BufferHead] = []
            try:
                blk, _, _ = bmap._walk(path, n, held)
                if not blk:
                    continue
                holder = held[-1] if len(path) > 1 else None
                with bmap.lock:
                    if holder is None:
                        bmap._touch_map(WRITE)
                        bmap.i_block[path[0]] = 0
                    else:
                        put_u32(holder.data, path[-1] * 4, 0)
                        bmap.dev.dirty_buffer(holder)
                    bmap.blocks512 -= bmap.geo.sectors_per_block
                    bmap.fresh.discard(blk)
                freed.append(blk)
            finally:
                for bh in held:
                    bmap.dev.put_buffer(bh)
    finally:
        # What was unhooked is freed, even if a later block's walk failed
        # (no frame for an indirect block, a read error): nothing leaks.
        if freed:
            bmap.alloc.free_blocks(freed, f"{bmap.name}: punching a hole")
    return len(freed)


def punch_backing(inode: Ext2Inode, offset: int, length: int) -> None:
    """Free the blocks under the whole pages of [offset, offset + length)
    that lie below the file's size."""
    inode.vol.check_writable(f"fallocate of inode {inode.ino}")
    end = min(offset + length, inode.size_word.load())
    first_page = -(-offset // PGSIZE)
    last_page = end // PGSIZE
    if last_page <= first_page:
        return
    per_page = PGSIZE // inode.vol.geo.block_size
    if punch_blocks(inode.bmap, first_page * per_page, (last_page - first_page) * per_page):
        inode.dirty = True
    inode.touch()


def allocate_backing(inode: Ext2Inode, keep_size: bool, offset: int, length: int) -> None:
    """Allocate the blocks of the range (below the size with KEEP_SIZE).
    Growing zeroes the old last block past the old size first, as a growing
    truncate does (its bytes on disk may be an old end's).  ENOSPC part way
    keeps what was allocated below the size and frees the rest."""
    inode.vol.check_writable(f"fallocate of inode {inode.ino}")
    size = inode.size_word.load()
    end = min(offset + length, size) if keep_size else offset + length
    if end <= offset:
        return
    if end > inode.vol.max_file_size:
        raise TooBig(
            f"{inode.name}: fallocate to {end} passes the largest file this filesystem "
            f"can hold ({inode.vol.max_file_size} bytes)"
        )
    if end > size:
        inode._zero_tail(size)
    covered = inode._allocate_range(offset, end - offset)
    if covered < end - offset:
        inode._free_past(size)
        raise NoSpace(f"{inode.name}: fallocate found the filesystem full part way")
    inode.touch()


__all__ = ["allocate_backing", "punch_backing", "punch_blocks"]
