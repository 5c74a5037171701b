"""Sync and unmount: every dirty page, inode and the superblock to the
image; then, at unmount, orphans freed, the filesystem marked clean, every
cached page dropped and the device released.

Part of Ext2FS: fs.py mixes this class in.  Rules: both calls hold the
namespace lock (`_ns`) throughout, so no name changes under them; file data
is not locked out, and sync writes what each page map holds when it gets
there.  unmount refuses (EBUSY) while any inode is open or mapped.  A
failed page write does not stop sync: every inode is tried, and the first
error raised at the end.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from pagemap.kernel.fs.ext2.errors import Busy
from pagemap.kernel.fs.ext2.inode import Ext2Inode
from pagemap.kernel.fs.ext2.volume import Volume
from pagemap.kernel.radix import ALL_PAGES


class SyncUnmount:
    """sync and unmount of an Ext2FS."""

    vol: Volume
    inodes: dict[int, Ext2Inode]
    mount_state: int
    holder: object

    if TYPE_CHECKING:

        def _ns(self, what: str) -> AbstractContextManager[None]: ...

        def _maybe_free(self, inode: Ext2Inode) -> None: ...

    # -- sync and unmount -------------------------------------------------------------------
    def sync(self) -> None:
        """Write back every file's dirty pages, every changed inode, the
        superblock and descriptors (and their backups), and make the image
        durable."""
        if self.vol.readonly:
            return
        with self._ns("sync"):
            self._sync_locked()

    def _sync_locked(self) -> None:
        first_error: OSError | None = None
        for ino in sorted(self.inodes):
            inode = self.inodes[ino]
            if inode.is_reg():
                try:
                    inode.mapping.collect_mapped_dirty(0, ALL_PAGES)
                    inode.mapping.writeback(0, ALL_PAGES)
                    inode.trim()
                except OSError as exc:
                    first_error = first_error or exc
            if inode.dirty:
                inode.write_inode()
        self.vol.write_super()
        self.vol.dev.sync()
        if first_error is not None:
            raise first_error

    def unmount(self) -> None:
        """Sync, free unlinked inodes, mark the filesystem clean, drop every
        cached page, and release the device.  EBUSY while a file is open or
        mapped."""
        vol = self.vol
        with self._ns("unmount"):
            for inode in self.inodes.values():
                if inode.open_count.load() or inode.mapping.vmrs:
                    raise Busy(f"{vol.name}: inode {inode.ino} is still open or mapped")
            if not vol.readonly:
                self._make_room()
                for ino in sorted(self.inodes):
                    if ino in self.inodes:
                        self._maybe_free(self.inodes[ino])
                self._sync_locked()
                self._zero_fresh()
                with vol.sb_lock:
                    vol.sb.state = self.mount_state
                vol.write_super()
                vol.dev.sync()
            for inode in self.inodes.values():
                inode.mapping.remove_contig(0, ALL_PAGES)
            vol.dev.mapping.remove_contig(0, ALL_PAGES)
            vol.mounted = False
            vol.dev.release(self.holder)
            if not vol.readonly:
                vol.dev.io.unlock()

    def _make_room(self) -> None:
        """Evict what can be evicted before syncing: once nothing is open or
        mapped, every cached page may go, and writing inodes and the
        superblock needs free frames for their buffers even when no flusher
        is running to make some (an unmount after the run is over).  Clean
        pages go even where a dirty one's writeback fails for want of a
        frame; the sync that follows tries those again."""
        for ino in sorted(self.inodes):
            with contextlib.suppress(OSError):
                self.inodes[ino].mapping.remove_contig(0, ALL_PAGES)
        with contextlib.suppress(OSError):
            self.vol.dev.mapping.remove_contig(0, ALL_PAGES)

    def _zero_fresh(self) -> None:
        """Blocks allocated for a write that never reached them (it failed
        after allocating) hold an old file's bytes on disk: zero them."""
        bs = self.vol.geo.block_size
        for ino in sorted(self.inodes):
            bmap = self.inodes[ino].bmap
            for blk in sorted(bmap.fresh):
                self.vol.dev.write_blocks(blk, bytes(bs), bs)
            bmap.fresh.clear()
