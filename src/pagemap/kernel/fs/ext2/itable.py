"""The inode table on disk: where an inode lives, reading it, checking it,
and the bytes past 128 of a fresh one.

Rules: the caller holds the namespace lock (fs.py) or owns the inode; each
read takes the table block's buffer for the length of the copy only.  What
is read is checked (check_disk_inode) before an Ext2Inode is built on it:
corruption is EUCLEAN here, not a wrong answer later.
"""

from __future__ import annotations

from pagemap.kernel.fs.ext2.errors import Corrupt
from pagemap.kernel.fs.ext2.layout import (
    CRTIME_OFFSET,
    EXTRA_ISIZE_OFFSET,
    GOOD_OLD_INODE_SIZE,
    S_IFDIR,
    S_IFLNK,
    S_IFMT,
    S_IFREG,
    DiskInode,
)
from pagemap.kernel.fs.ext2.volume import Volume


def locate_inode(vol: Volume, ino: int) -> tuple[int, int]:
    """(block, offset) of inode `ino` in its group's inode table."""
    geo = vol.geo
    if not 1 <= ino <= geo.inodes_count:
        raise Corrupt(f"inode number {ino} is outside 1..{geo.inodes_count}")
    group = vol.groups[(ino - 1) // geo.inodes_per_group]
    return geo.inode_location(ino, group.desc.inode_table)


def read_disk_inode(vol: Volume, ino: int) -> tuple[DiskInode, bytes]:
    """The on-disk inode and the bytes past its first 128."""
    blk, off = locate_inode(vol, ino)
    isz = vol.geo.inode_size
    bh = vol.dev.get_buffer(blk, vol.geo.block_size)
    try:
        raw = bytes(bh.data[off : off + isz])
    finally:
        vol.dev.put_buffer(bh)
    return DiskInode.parse(raw), raw[GOOD_OLD_INODE_SIZE:]


def check_disk_inode(vol: Volume, ino: int, d: DiskInode) -> None:
    """What must hold of an inode a directory entry names."""
    where = f"inode {ino}"
    if not d.links_count or not d.mode:
        raise Corrupt(f"{where} is named by a directory entry but is free (no links or mode)")
    fmt = d.mode & S_IFMT
    if fmt not in (S_IFREG, S_IFDIR, S_IFLNK, 0o020000, 0o060000, 0o010000, 0o140000):
        raise Corrupt(f"{where}: unknown file type in mode {d.mode:#o}")
    geo = vol.geo
    if fmt == S_IFDIR and (d.size() % geo.block_size or d.size_high):
        raise Corrupt(
            f"{where}: a directory of {d.size()} bytes, not a whole number of "
            f"{geo.block_size}-byte blocks"
        )
    # A directory has no holes: its size is bounded by the blocks it owns,
    # and those by the filesystem (so a walk over its blocks ends soon).
    if fmt == S_IFDIR and d.size() > min(d.blocks * 512, geo.blocks_count * geo.block_size):
        raise Corrupt(f"{where}: a directory of {d.size()} bytes owning only {d.blocks} sectors")
    if d.size() > vol.max_file_size:
        raise Corrupt(f"{where}: size {d.size()} passes the largest file the filesystem allows")
    if d.file_acl:
        vol.alloc.check_data_block(d.file_acl, f"{where}'s extended attribute block")


def new_extra(vol: Volume, now: int) -> bytes:
    """The bytes past 128 of a fresh inode: i_extra_isize as mke2fs sets it,
    and the creation time."""
    isz = vol.geo.inode_size
    if isz <= GOOD_OLD_INODE_SIZE:
        return b""
    extra = bytearray(isz - GOOD_OLD_INODE_SIZE)
    want = vol.sb.want_extra_isize or 32
    want = min(want, isz - GOOD_OLD_INODE_SIZE) & ~3
    extra[EXTRA_ISIZE_OFFSET - 128 : EXTRA_ISIZE_OFFSET - 126] = want.to_bytes(2, "little")
    if want >= CRTIME_OFFSET + 4 - 128:
        extra[CRTIME_OFFSET - 128 : CRTIME_OFFSET - 124] = now.to_bytes(4, "little")
    return bytes(extra)
