"""Mutants of the ext2 rooms the namespace calls and the inode's own state
live in (kernel/fs/ext2/namei.py, kernel/fs/ext2/inode.py): a namespace call
that forgets a step of its change, and writeback that skips a page's holes.

Rules: as every family (check/mutants/base.py).  Each replaces one method as
its class looks it up; the bug is marked BUG where the code departs from the
kernel's.
"""

from __future__ import annotations

from pagemap.check.mutants.base import Mutant
from pagemap.kernel.fs.ext2 import Ext2FS
from pagemap.kernel.fs.ext2 import dir as dirops
from pagemap.kernel.fs.ext2.errors import IsADirectory, NotADirectory, NotFound
from pagemap.kernel.fs.ext2.inode import Ext2Inode, _runs
from pagemap.kernel.fs.ext2.namei import _locked
from pagemap.kernel.fs.ext2.truncate import ZERO_PAGE
from pagemap.kernel.page import Page
from pagemap.kernel.pagemap import PageMap
from pagemap.sync.core import READ


def _unlink_keeps_link(self: Ext2FS, path: str) -> None:
    self.vol.check_writable(f"unlink {path!r}")
    with self._ns("unlink"):
        parent, name, slash = self._parent(path, IsADirectory)
        child = self._child(parent, name)
        if child is None:
            raise NotFound(f"{path}: no such file or directory")
        if child.is_dir():
            raise IsADirectory(f"{path}: is a directory")
        if slash:
            raise NotADirectory(f"{path}: not a directory")
        dirops.remove(parent, name)
        with _locked(child):
            # BUG: the name is gone but the count of names is not lowered: the
            # inode is never freed, and e2fsck finds a count that names no one.
            child.touch(mtime=False)
            child.mark_dirty()
        parent.mark_dirty()
        self._free_or_defer(child)


def _writepage_skips_holes(self: Ext2Inode, pm: PageMap, page: Page) -> None:
    bs = self.vol.geo.block_size
    first, nblk, nbytes = self._span(page)
    if not nblk:
        return
    self.vol.check_writable(f"writeback of page {page.index} of inode {self.ino}")
    known = self._remembered(page)
    for i in range(nblk):
        if not known[i]:
            known[i] = self.bmap.lookup(first + i)
    self.executor.point("frame_read", page.ppn, READ)
    data = bytearray(page.data[: nblk * bs])
    data[nbytes:] = ZERO_PAGE[: nblk * bs - nbytes]
    # BUG: a block of the page that is a hole stays one: what a store through
    # a mapping wrote there is written nowhere, and the page is clean.
    page.buffers = known
    blocks = known[:nblk]
    for i, j, blk in _runs(blocks):
        self.vol.dev.write_blocks(blk, data[i * bs : j * bs], bs)
    self.bmap.written([b for b in blocks if b])


EXT2_NAMEI_MUTANTS = (
    Mutant(
        "unlink-keeps-link",
        "unlink takes the name away and leaves the inode's count of names as it was",
        "ext2-unlink-reuse",
        {"unlink": _unlink_keeps_link},
        budget=50,
        target=Ext2FS,
    ),
    Mutant(
        "writepage-skips-holes",
        "writeback of a page over a hole writes its bytes nowhere",
        "ext2-store-remove",
        {"writepage": _writepage_skips_holes},
        budget=50,
        target=Ext2Inode,
        # Under "wp" a write fault allocates the hole's blocks (page_mkwrite)
        # before any store lands: writepage meets holes under D bits only.
        dirty_tracking="dbit",
    ),
)

__all__ = ["EXT2_NAMEI_MUTANTS"]
