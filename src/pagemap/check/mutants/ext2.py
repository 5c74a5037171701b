"""Mutants of ext2 (kernel/fs/ext2/): truncate's and unlink's order against the
block map and the bitmap, the block allocator's group lock, a directory add's
buffer, and an ext2 truncate's order against the size.

Rules: as every family (check/mutants/base.py); a seam that is a module's
function (dir.add) is patched in that module, so the target is the module.
The four tables keep their places in the one table (check/mutants/__init__.py).
"""

from __future__ import annotations

from unittest import mock

from pagemap.check.mutants.base import Mutant
from pagemap.hw.memory import PGSHIFT, PGSIZE
from pagemap.kernel.fs.ext2 import Ext2FS
from pagemap.kernel.fs.ext2 import dir as dirops
from pagemap.kernel.fs.ext2.balloc import Allocator, find_zero, set_bit
from pagemap.kernel.fs.ext2.bmap import BlockMap
from pagemap.kernel.fs.ext2.dir import _add_block as dir_add_block
from pagemap.kernel.fs.ext2.dir import _blocks as dir_blocks
from pagemap.kernel.fs.ext2.dir import _changed as dir_changed
from pagemap.kernel.fs.ext2.errors import Corrupt
from pagemap.kernel.fs.ext2.inode import Ext2Inode
from pagemap.kernel.fs.ext2.layout import (
    NDIR_BLOCKS,
    pack_dirent,
    rec_len_for,
    set_rec_len,
)
from pagemap.kernel.fs.ext2.super import Group
from pagemap.kernel.page import (
    PG_DIRTY,
    lock_page,
    unlock_page,
)
from pagemap.kernel.vfs import pages_spanned
from pagemap.sync.core import WRITE


def _truncate_frees_first(self: BlockMap, keep: int) -> int:
    # BUG: the bitmap gets the blocks back while the map still names them, and
    # only then does the map let go (direct blocks: the scenario's files need
    # no others).
    doomed = [b for b in self.i_block[min(keep, NDIR_BLOCKS) : NDIR_BLOCKS] if b]
    if doomed:
        self.alloc.free_blocks(doomed, f"{self.name}: truncate")
    with self.lock:
        for k in range(min(keep, NDIR_BLOCKS), NDIR_BLOCKS):
            self.i_block[k] = 0
        self.blocks512 -= len(doomed) * self.geo.sectors_per_block
    return len(doomed)


_REAL_TRUNCATE = BlockMap.truncate


def _truncate_frees_indirect_first(self: BlockMap, keep: int) -> int:
    # BUG: the blocks past `keep`, the indirect block among them, go back to
    # the bitmap while the map still names them; only then is the map cut
    # (by the real truncate, whose own frees are skipped: they were done).
    named = self.blocks512 // self.geo.sectors_per_block  # blocks of a file with no holes
    doomed = [b for n in range(keep, named) if (b := self.lookup(n))]
    if keep <= NDIR_BLOCKS and self.i_block[NDIR_BLOCKS]:
        doomed.append(self.i_block[NDIR_BLOCKS])
    if doomed:
        self.alloc.free_blocks(doomed, f"{self.name}: truncate")
    with mock.patch.object(self.alloc, "free_blocks", lambda blocks, where: None):
        return _REAL_TRUNCATE(self, keep)


def _never_in_use(inode: Ext2Inode) -> bool:
    # BUG: no check that the inode is still open or mapped: an unlinked file's
    # blocks go back to the bitmap while its dirty pages are yet to be written.
    return False


EXT2_MUTANTS = (
    Mutant(
        "ext2-frees-first",
        "truncate frees blocks in the bitmap before the inode's map lets go of them",
        "ext2-append-truncate",
        {"truncate": _truncate_frees_first},
        budget=100,
        target=BlockMap,
    ),
    Mutant(
        "ext2-frees-indirect-first",
        "truncate frees an indirect block and what it names before the map lets go of them",
        "ext2-indirect-truncate",
        {"truncate": _truncate_frees_indirect_first},
        budget=800,
        target=BlockMap,
    ),
    Mutant(
        "ext2-frees-open-file",
        "unlink frees an inode's blocks while the file is still open with dirty pages",
        "ext2-unlink-reuse",
        {"_in_use": staticmethod(_never_in_use)},
        budget=20,
        target=Ext2FS,
    ),
)


def _alloc_found_before_the_lock(self: Allocator, group: Group, start: int) -> int:
    if not group.desc.free_blocks_count:
        return 0
    geo = self.geo
    nbits = geo.group_end(group.index) - geo.group_start(group.index)
    bh = self._bitmap(group.desc.block_bitmap)
    try:
        # BUG: the free bit is looked for before the group's lock, not under
        # it: two allocators can find the same bit and both take its block.
        bit = find_zero(bh.data, start, nbits)
        if bit < 0:
            bit = find_zero(bh.data, 0, min(start, nbits))
        if bit < 0:
            return 0
        with group.lock:
            set_bit(bh.data, bit)
            group.desc.free_blocks_count -= 1
            self.dev.dirty_buffer(bh)
            return geo.group_start(group.index) + bit
    finally:
        self.dev.put_buffer(bh)


EXT2_ROOM_MUTANTS = (
    Mutant(
        "ext2-alloc-looks-unlocked",
        "a block allocator looks for a free bit before taking its group's lock",
        "ext2-append-truncate",
        {"_alloc_in_group": _alloc_found_before_the_lock},
        budget=100,
        target=Allocator,
    ),
)


def _dir_add_puts_first(d: Ext2Inode, name: bytes, ino: int, file_type: int) -> None:
    vol = d.vol
    geo = vol.geo
    need = rec_len_for(len(name))
    ftype = file_type if geo.filetype else 0
    for _, phys, entries in dir_blocks(d):
        for e in entries:
            used = rec_len_for(e.name_len) if e.inode else 0
            if e.rec_len - used < need:
                continue
            bh = vol.dev.get_buffer(phys, geo.block_size)
            # BUG: the buffer goes back before the block is changed and marked
            # dirty: the device's removal can write and free its page between.
            vol.dev.put_buffer(bh)
            if e.inode:
                set_rec_len(bh.data, e.offset, used)
            pack_dirent(bh.data, e.offset + used, ino, e.rec_len - used, name, ftype)
            vol.dev.dirty_buffer(bh)
            dir_changed(d)
            return
    dir_add_block(d, name, ino, ftype)


EXT2_NAMESPACE_MUTANTS = (
    Mutant(
        "dir-add-puts-first",
        "a directory add gives its block's buffer back before it changes the block",
        "ext2-namespace-writeback",
        {"add": _dir_add_puts_first},
        budget=500,
        target=dirops,
    ),
)


def _shrink_pages_first(self: Ext2Inode, size: int) -> None:
    last = self.mapping.load_page(size >> PGSHIFT) if size % PGSIZE else None
    if last is not None:
        lock_page(last)
    try:
        # BUG: the pages past the end are dropped before the size is cut, not
        # after: a fault between the two reads the old size and maps a page
        # past the new end, which nothing unmaps again.
        self.mapping.truncate_pages(pages_spanned(size))
        self.mapping.drop_private_copies(pages_spanned(size))
        self.size_word.store(size)
        if last is not None:
            self.executor.point("frame_write", last.ppn, WRITE)
            last.data[size % PGSIZE :] = bytes(PGSIZE - size % PGSIZE)
            if size % self.vol.geo.block_size:
                last.flags.fetch_or(PG_DIRTY)
            self._forget_past(last, size)
        try:
            self._free_blocks_past(size)
        except Corrupt:
            raise
        except OSError:
            self.trim_pending = True
    finally:
        if last is not None:
            unlock_page(last)
            self.mapping.put_page(last)


EXT2_TRUNCATE_MUTANTS = (
    Mutant(
        "ext2-shrink-size-last",
        "an ext2 truncate drops the pages past the new end before it cuts the size",
        "ext2-truncate-read",
        {"_shrink": _shrink_pages_first},
        budget=100,
        target=Ext2Inode,
    ),
)
