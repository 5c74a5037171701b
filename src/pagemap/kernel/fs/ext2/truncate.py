"""Truncation and deletion of an ext2 inode's blocks.

Part of Ext2Inode: inode.py's class is this one with the rest of the inode
(its page map's ops, write, symlinks) added.  Rules: truncate takes the
inode's `lock` (i_rwsem), then the new last page's lock, then the mapping's
invalidate lock (exclusive), and cuts in this order: the size, the pages
past it (truncate_pages waits for their users), the blocks past it; so no
writepage that read the old size writes a block being freed.  Freeing blocks
that cannot be freed now (no frame for a buffer) leaves `trim_pending` for
the next sync or unmount (trim); the truncate has happened either way.
release_blocks is for an inode with no link and no user left.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pagemap.hw.memory import PGSHIFT, PGSIZE
from pagemap.kernel.errors import InvalidArgument
from pagemap.kernel.fs.ext2.bmap import BlockMap
from pagemap.kernel.fs.ext2.errors import Corrupt, IsADirectory, TooBig
from pagemap.kernel.fs.ext2.layout import XATTR_MAGIC, DiskInode, put_u32, u32
from pagemap.kernel.fs.ext2.volume import Volume
from pagemap.kernel.owner import as_int
from pagemap.kernel.page import PG_DIRTY, Page, lock_page, unlock_page
from pagemap.kernel.vfs import Inode, pages_spanned
from pagemap.sync.core import WRITE

ZERO_PAGE = bytes(PGSIZE)


class Truncate(Inode):
    """The block-freeing half of an ext2 inode."""

    # What truncation uses of the inode: fields Ext2Inode.__init__ sets.
    vol: Volume
    ino: int
    disk: DiskInode
    bmap: BlockMap
    fast_symlink: bool
    trim_pending: bool
    dirty: bool

    if TYPE_CHECKING:

        def is_reg(self) -> bool: ...

        def touch(self, mtime: bool = True) -> None: ...

        def _zero_tail(self, size: int) -> None: ...

    # -- truncate ----------------------------------------------------------------------------
    def truncate(self, size: int) -> None:
        """Make the file `size` bytes long; blocks past the end are freed.

        Order: the new size, then the pages past it (truncate_pages waits for
        their users), then the blocks past it, with the new last page held
        locked throughout so no writepage that read the old size can write a
        block being freed, and so its bytes past the end are zeroed (and made
        dirty, so the disk gets the zeros too) before anybody sees them.
        """
        size = as_int(size, f"{self.name}: truncate", "the size")
        self.vol.check_writable(f"truncate of inode {self.ino}")
        if not self.is_reg():
            raise IsADirectory(f"{self.name}: truncate of something that is not a regular file")
        if size < 0:
            raise InvalidArgument(f"{self.name}: truncate to {size}: a size may not be negative")
        if size > self.vol.max_file_size:
            raise TooBig(
                f"{self.name}: truncate to {size} passes the largest file this filesystem "
                f"can hold ({self.vol.max_file_size} bytes)"
            )
        self.lock.down()
        try:
            old = self.size_word.load()
            if size > old:
                self._zero_tail(old)
                self.size_word.store(size)
            elif size < old:
                self._shrink(size)
            self.touch()
        finally:
            self.lock.up()

    def _shrink(self, size: int) -> None:
        last = self.mapping.load_page(size >> PGSHIFT) if size % PGSIZE else None
        if last is not None:
            lock_page(last)
        # No read or fault adds a page past the end while the blocks under it
        # are freed (kernel/invalidate.py); its readers hold no page lock of
        # ours, so taking it under the last page's lock cannot deadlock.
        self.mapping.invalidate_lock.down_write()
        try:
            self.size_word.store(size)
            self.mapping.truncate_pages(pages_spanned(size))
            self.mapping.drop_private_copies(pages_spanned(size))
            if last is not None:
                self.executor.point("frame_write", last.ppn, WRITE)
                last.data[size % PGSIZE :] = ZERO_PAGE[size % PGSIZE :]
                if size % self.vol.geo.block_size:
                    last.flags.fetch_or(PG_DIRTY)
                self._forget_past(last, size)
            try:
                self._free_blocks_past(size)
            except Corrupt:
                raise
            except OSError:
                # The size is cut and the pages are gone: the truncate has
                # happened, as on Linux, where freeing the blocks cannot fail
                # it.  The blocks could not be freed for now (no frame for an
                # indirect block or a bitmap, a read error), and nothing of
                # the map changed (bmap.truncate is all or nothing): the next
                # sync, or unmount, frees them (trim), so e2fsck never sees
                # them (test_a_shrinking_truncate_that_fails_part_way_leaks_nothing).
                self.trim_pending = True
        finally:
            self.mapping.invalidate_lock.up_write()
            if last is not None:
                unlock_page(last)
                self.mapping.put_page(last)

    def _free_past(self, size: int) -> None:
        """Free blocks past `size` that a failed write allocated (no page past
        `size` holds bytes for them); the last page is locked around it."""
        last = self.mapping.find_page(size >> PGSHIFT) if size % PGSIZE else None
        if last is not None:
            lock_page(last)
        try:
            self._forget_past(last, size)
            self._free_blocks_past(size)
            self.trim_pending = False
        except OSError:
            # Freeing needs buffers, and so frames; if none could be had, the
            # blocks past the end stay allocated (unreachable, fresh) until the
            # next sync trims them (fs.py), so e2fsck never sees them.
            self.trim_pending = True
        finally:
            if last is not None:
                unlock_page(last)
                self.mapping.put_page(last)

    def trim(self) -> None:
        """Free blocks a failed write left past the end, if any."""
        if self.trim_pending:
            self.lock.down()
            try:
                self._free_past(self.size_word.load())
            finally:
                self.lock.up()

    def _forget_past(self, last: Page | None, size: int) -> None:
        """The locked last page no longer has blocks past `size` under it."""
        if last is None or not isinstance(last.buffers, list):
            return
        bs = self.vol.geo.block_size
        keep = (size + bs - 1) // bs - last.index * (PGSIZE // bs)
        for i in range(max(0, keep), len(last.buffers)):
            last.buffers[i] = 0

    def _free_blocks_past(self, size: int) -> None:
        bs = self.vol.geo.block_size
        if self.bmap.truncate((size + bs - 1) // bs):
            self.dirty = True

    # -- deletion ----------------------------------------------------------------------------
    def release_blocks(self) -> None:
        """Free every block the inode owns (data, indirect, its xattr block):
        the last link and the last user are gone."""
        if not self.fast_symlink:
            self.size_word.store(0)
            self.mapping.truncate_pages(0)
            self.bmap.truncate(0)
        self._drop_xattr_block()
        self.dirty = True

    def _drop_xattr_block(self) -> None:
        blk = self.disk.file_acl
        if not blk:
            return
        vol = self.vol
        where = f"inode {self.ino}'s extended attribute block"
        vol.alloc.check_data_block(blk, where)
        bh = vol.dev.get_buffer(blk, vol.geo.block_size)
        try:
            if u32(bh.data, 0) != XATTR_MAGIC:
                raise Corrupt(f"{where} {blk} has a bad magic number {u32(bh.data, 0):#x}")
            refs = u32(bh.data, 4)
            if refs > 1:
                put_u32(bh.data, 4, refs - 1)
                vol.dev.dirty_buffer(bh)
        finally:
            vol.dev.put_buffer(bh)
        if refs <= 1:
            vol.dev.forget_buffer(blk, vol.geo.block_size)
            vol.alloc.free_blocks([blk], where)
        with self.bmap.lock:
            self.bmap.blocks512 = max(0, self.bmap.blocks512 - vol.geo.sectors_per_block)
        self.disk.file_acl = 0
