"""Directories: blocks of variable-length entries (inode, rec_len, name_len,
file_type, name), found, added, removed and listed.

Directory blocks are metadata: they live in the block device's cache, as
buffer heads, like the bitmaps and the inode tables, and not in the
directory inode's page map (Linux's ext2 keeps them in the directory's own
page cache instead).  The device cache gives per-block dirty tracking, and
an entry is changed in place in its buffer, which is all a directory needs;
a freed directory block is forgotten by the cache (bmap.py) before it can
hold file data.

Rules.  The caller holds the filesystem's namespace lock (fs.py) for every
call here, so no two of these run at once on any directory.  A change is
made in the buffer and only then is the buffer marked dirty.  Every change
clears the directory's index flag (dir_index): this driver keeps no htree,
and Linux's ext2 does the same so that e2fsck does not find a stale index.
A block that breaks the entry rules is Corrupt, named by directory inode,
block and offset.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from pagemap.kernel.fs.ext2.errors import Corrupt, NotFound
from pagemap.kernel.fs.ext2.inode import Ext2Inode
from pagemap.kernel.fs.ext2.layout import (
    FT_DIR,
    INDEX_FL,
    DirEntry,
    pack_dirent,
    parse_dir_block,
    rec_len_for,
    set_dirent_inode,
    set_rec_len,
)


@dataclass(frozen=True)
class Found:
    """An entry as found: its name, inode and type, and where it is."""

    name: bytes
    ino: int
    file_type: int
    block: int  # directory block number
    offset: int


def _nblocks(d: Ext2Inode) -> int:
    return d.size // d.vol.geo.block_size


def _phys(d: Ext2Inode, n: int) -> int:
    blk = d.bmap.lookup(n)
    if not blk:
        raise Corrupt(f"directory inode {d.ino}: block {n} is a hole")
    return blk


def _blocks(d: Ext2Inode) -> Iterator[tuple[int, int, list[DirEntry]]]:
    """(block number, device block, entries) for each block, in order."""
    vol = d.vol
    geo = vol.geo
    for n in range(_nblocks(d)):
        phys = _phys(d, n)
        bh = vol.dev.get_buffer(phys, geo.block_size)
        try:
            entries = parse_dir_block(
                bh.data,
                geo.block_size,
                geo.inodes_count,
                geo.filetype,
                f"directory inode {d.ino}, block {n}",
            )
        finally:
            vol.dev.put_buffer(bh)
        yield n, phys, entries


def find(d: Ext2Inode, name: bytes) -> Found | None:
    for n, _, entries in _blocks(d):
        for e in entries:
            if e.inode and e.name == name:
                return Found(e.name, e.inode, e.file_type, n, e.offset)
    return None


def listing(d: Ext2Inode) -> list[Found]:
    """Every live entry, "." and ".." included, in on-disk order."""
    return [
        Found(e.name, e.inode, e.file_type, n, e.offset)
        for n, _, entries in _blocks(d)
        for e in entries
        if e.inode
    ]


def is_empty(d: Ext2Inode) -> bool:
    return all(f.name in (b".", b"..") for f in listing(d))


def _changed(d: Ext2Inode) -> None:
    d.disk.flags &= ~INDEX_FL
    d.touch()


def add(d: Ext2Inode, name: bytes, ino: int, file_type: int) -> None:
    """Add an entry: in the first gap big enough, else in a new block at the
    end (ENOSPC if none can be had, with nothing changed)."""
    vol = d.vol
    geo = vol.geo
    need = rec_len_for(len(name))
    ftype = file_type if geo.filetype else 0
    for _, phys, entries in _blocks(d):
        for e in entries:
            used = rec_len_for(e.name_len) if e.inode else 0
            if e.rec_len - used < need:
                continue
            bh = vol.dev.get_buffer(phys, geo.block_size)
            try:
                if e.inode:
                    set_rec_len(bh.data, e.offset, used)
                pack_dirent(bh.data, e.offset + used, ino, e.rec_len - used, name, ftype)
                vol.dev.dirty_buffer(bh)
            finally:
                vol.dev.put_buffer(bh)
            _changed(d)
            return
    _add_block(d, name, ino, ftype)


def _add_block(d: Ext2Inode, name: bytes, ino: int, ftype: int) -> None:
    vol = d.vol
    bs = vol.geo.block_size
    n = _nblocks(d)
    phys = d.bmap.allocate(n, fresh=False)
    try:
        bh = vol.dev.get_buffer(phys, bs)
        try:
            bh.data[:] = bytes(bs)
            pack_dirent(bh.data, 0, ino, bs, name, ftype)
            vol.dev.dirty_buffer(bh)
        finally:
            vol.dev.put_buffer(bh)
    except BaseException:
        d.bmap.truncate(n)
        raise
    d.size_word.store((n + 1) * bs)
    _changed(d)


def remove(d: Ext2Inode, name: bytes) -> int:
    """Remove the entry `name`; the inode it named.  Its record joins the
    one before it in the block (or, first in its block, is marked unused)."""
    vol = d.vol
    geo = vol.geo
    for _, phys, entries in _blocks(d):
        prev: DirEntry | None = None
        for e in entries:
            if e.inode and e.name == name:
                bh = vol.dev.get_buffer(phys, geo.block_size)
                try:
                    if prev is not None:
                        set_rec_len(bh.data, prev.offset, prev.rec_len + e.rec_len)
                    set_dirent_inode(bh.data, e.offset, 0, 0)
                    vol.dev.dirty_buffer(bh)
                finally:
                    vol.dev.put_buffer(bh)
                _changed(d)
                return e.inode
            prev = e
    raise NotFound(f"directory inode {d.ino} has no entry {name!r}")


def retarget(d: Ext2Inode, name: bytes, ino: int, file_type: int) -> None:
    """Point the existing entry `name` at another inode (rename over it, or
    a moved directory's "..")."""
    vol = d.vol
    geo = vol.geo
    found = find(d, name)
    if found is None:
        raise NotFound(f"directory inode {d.ino} has no entry {name!r}")
    bh = vol.dev.get_buffer(_phys(d, found.block), geo.block_size)
    try:
        set_dirent_inode(bh.data, found.offset, ino, file_type if geo.filetype else 0)
        vol.dev.dirty_buffer(bh)
    finally:
        vol.dev.put_buffer(bh)
    _changed(d)


def init_block(d: Ext2Inode, parent_ino: int) -> None:
    """Give a new directory its first block: "." and ".."."""
    vol = d.vol
    bs = vol.geo.block_size
    ftype = FT_DIR if vol.geo.filetype else 0
    phys = d.bmap.allocate(0, fresh=False)
    bh = vol.dev.get_buffer(phys, bs)
    try:
        bh.data[:] = bytes(bs)
        pack_dirent(bh.data, 0, d.ino, 12, b".", ftype)
        pack_dirent(bh.data, 12, parent_ino, bs - 12, b"..", ftype)
        vol.dev.dirty_buffer(bh)
    finally:
        vol.dev.put_buffer(bh)
    d.size_word.store(bs)
