"""Reading the tree: stat, lstat, readdir, readlink, statfs, and the
records they return (Stat, StatFS, DirEntry).

Part of Ext2FS: fs.py mixes this class in.  Rules: each call but statfs
holds the namespace lock (`_ns`) while it walks and reads; statfs reads the
allocator's counts without it (a count may be a moment old, as on Linux).
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pagemap.kernel.errors import InvalidArgument
from pagemap.kernel.fs.ext2 import dir as dirops
from pagemap.kernel.fs.ext2.errors import NotADirectory, NotFound
from pagemap.kernel.fs.ext2.inode import Ext2Inode
from pagemap.kernel.fs.ext2.layout import NAME_LEN
from pagemap.kernel.fs.ext2.lookup import PathWalk


@dataclass(frozen=True)
class Stat:
    ino: int
    mode: int
    nlink: int
    size: int
    blocks: int  # 512-byte units
    uid: int
    gid: int
    atime: int
    mtime: int
    ctime: int


@dataclass(frozen=True)
class StatFS:
    block_size: int
    blocks: int  # data blocks: the total less the groups' metadata
    blocks_free: int
    blocks_available: int  # free less those reserved for root
    files: int
    files_free: int
    name_max: int


@dataclass(frozen=True)
class DirEntry:
    name: str
    ino: int
    file_type: int


class ReadTree(PathWalk):
    """The calls that read the namespace and change nothing."""

    if TYPE_CHECKING:

        def _ns(self, what: str) -> AbstractContextManager[None]: ...

    def stat(self, path: str) -> Stat:
        with self._ns("stat"):
            return self._stat(self._lookup(path, follow=True))

    def lstat(self, path: str) -> Stat:
        with self._ns("lstat"):
            return self._stat(self._lookup(path, follow=False))

    @staticmethod
    def _stat(inode: Ext2Inode) -> Stat:
        d = inode.disk
        return Stat(
            inode.ino,
            d.mode,
            d.links_count,
            inode.size,
            inode.bmap.blocks512,
            d.uid,
            d.gid,
            d.atime,
            d.mtime,
            d.ctime,
        )

    def exists(self, path: str) -> bool:
        try:
            self.lstat(path)
        except (NotFound, NotADirectory):
            return False
        return True

    def readdir(self, path: str = "/") -> list[DirEntry]:
        """The entries of a directory, "." and ".." left out, in on-disk order."""
        with self._ns("readdir"):
            d = self._lookup(path, follow=True)
            if not d.is_dir():
                raise NotADirectory(f"{path}: not a directory")
            return [
                DirEntry(os.fsdecode(f.name), f.ino, f.file_type)
                for f in dirops.listing(d)
                if f.name not in (b".", b"..")
            ]

    def listdir(self, path: str = "/") -> list[str]:
        return [e.name for e in self.readdir(path)]

    def readlink(self, path: str) -> str:
        with self._ns("readlink"):
            inode = self._lookup(path, follow=False)
            if not inode.is_symlink():
                raise InvalidArgument(f"{path}: not a symbolic link")
            return os.fsdecode(inode.read_link())

    def statfs(self) -> StatFS:
        vol = self.vol
        geo = vol.geo
        # As Linux's ext2_statfs: the superblock copies, descriptor tables,
        # bitmaps and inode tables are not data blocks.
        overhead = geo.first_data_block + sum(
            (1 + geo.desc_blocks if geo.has_super(g) else 0) + 2 + geo.itable_blocks
            for g in range(geo.groups)
        )
        free = vol.alloc.nr_free_blocks
        return StatFS(
            geo.block_size,
            geo.blocks_count - overhead,
            free,
            max(0, free - vol.sb.r_blocks_count),
            geo.inodes_count,
            vol.alloc.nr_free_inodes,
            NAME_LEN,
        )
