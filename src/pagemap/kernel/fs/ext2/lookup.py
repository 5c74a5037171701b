"""Paths: from a path to its inode, and from a directory back to its path.

Part of Ext2FS: fs.py mixes this class in.  Paths are absolute within the
filesystem; symlinks are followed in every component but the last (and in
the last where the caller asks), absolute targets starting again at the
root, at most MAX_SYMLINKS of them per walk.  Rules: the caller holds the
namespace lock (`ns_lock`) for every method here; they read directories
(dir.py) and the inode cache (`iget`), and change neither.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from pagemap.kernel.errors import InvalidArgument, KernelError
from pagemap.kernel.fs.ext2 import dir as dirops
from pagemap.kernel.fs.ext2.errors import (
    Busy,
    Corrupt,
    NameTooLong,
    NotADirectory,
    NotFound,
    SymlinkLoop,
)
from pagemap.kernel.fs.ext2.inode import Ext2Inode
from pagemap.kernel.fs.ext2.layout import NAME_LEN, ROOT_INO
from pagemap.kernel.fs.ext2.volume import Volume

MAX_SYMLINKS = 40  # as Linux's MAXSYMLINKS
PATH_MAX = 4096


def encode(name: str) -> bytes:
    """A name or path as ext2 stores it: bytes (names that are not UTF-8 come
    back from readdir as surrogate escapes, as os.listdir gives them)."""
    return os.fsencode(name)


class PathWalk:
    """Path walking over the inode cache of an Ext2FS."""

    vol: Volume

    if TYPE_CHECKING:

        def iget(self, ino: int) -> Ext2Inode: ...

    @staticmethod
    def _components(path: str) -> tuple[list[bytes], bool]:
        raw = encode(path)
        if b"\0" in raw:
            raise InvalidArgument(f"{path!r}: a path may not contain a NUL byte")
        if len(raw) >= PATH_MAX:
            raise NameTooLong(f"{path!r}: a path of {len(raw)} bytes (at most {PATH_MAX - 1})")
        parts = [p for p in raw.split(b"/") if p]
        return parts, raw.endswith(b"/") and bool(parts)

    @staticmethod
    def _check_name(name: bytes, path: str) -> None:
        """A name over 255 bytes is ENAMETOOLONG where the walk reaches it,
        as on Linux (a missing directory before it is ENOENT first)."""
        if len(name) > NAME_LEN:
            raise NameTooLong(
                f"{path!r}: the name {name[:16]!r}... is {len(name)} bytes (at most {NAME_LEN})"
            )

    @property
    def root(self) -> Ext2Inode:
        return self.iget(ROOT_INO)

    def _walk(
        self, start: Ext2Inode, parts: list[bytes], follow_last: bool, path: str
    ) -> Ext2Inode:
        cur = start
        pending = list(parts)
        links = 0
        while pending:
            name = pending.pop(0)
            if not cur.is_dir():
                raise NotADirectory(f"{path}: a component on the way is not a directory")
            if name == b".":
                continue
            self._check_name(name, path)
            found = dirops.find(cur, name)
            if found is None:
                raise NotFound(f"{path}: no such file or directory")
            child = self.iget(found.ino)
            if child.is_symlink() and (pending or follow_last):
                links += 1
                if links > MAX_SYMLINKS:
                    raise SymlinkLoop(f"{path}: too many levels of symbolic links")
                target = child.read_link()
                if target.startswith(b"/"):
                    cur = self.root
                pending = [p for p in target.split(b"/") if p] + pending
                continue
            cur = child
        return cur

    def _lookup(self, path: str, follow: bool = True) -> Ext2Inode:
        parts, slash = self._components(path)
        inode = self._walk(self.root, parts, follow or slash, str(path))
        if slash and not inode.is_dir():
            raise NotADirectory(f"{path}: not a directory")
        return inode

    def _parent(self, path: str, root: type[KernelError] = Busy) -> tuple[Ext2Inode, bytes, bool]:
        """(the directory that holds the last component, its name, trailing slash).

        A path that is the root itself has no last component; each call
        refuses it with Linux's errno for that call (`root`): mkdir, link,
        symlink and an exclusive create EEXIST, unlink and open EISDIR,
        rmdir and rename EBUSY (test_the_root_gives_linux_errnos)."""
        parts, slash = self._components(path)
        if not parts:
            raise root(f"{path!r}: the root directory")
        parent = self._walk(self.root, parts[:-1], True, path)
        if not parent.is_dir():
            raise NotADirectory(f"{path}: a component on the way is not a directory")
        return parent, parts[-1], slash

    def _child(self, parent: Ext2Inode, name: bytes) -> Ext2Inode | None:
        self._check_name(name, os.fsdecode(name))
        if name == b".":
            return parent
        found = dirops.find(parent, name)
        return None if found is None else self.iget(found.ino)

    def _path_of(self, d: Ext2Inode) -> bytes:
        """The absolute path of directory d, found by walking ".." up."""
        names: list[bytes] = []
        cur = d
        for _ in range(self.vol.geo.inodes_count + 1):
            if cur.ino == ROOT_INO:
                return b"/" + b"/".join(reversed(names))
            up = self._up(cur)
            names.append(self._name_in(up, cur.ino))
            cur = up
        raise Corrupt(f'directory inode {d.ino}: its ".." entries form a loop')

    def _up(self, d: Ext2Inode) -> Ext2Inode:
        found = dirops.find(d, b"..")
        if found is None:
            raise Corrupt(f'directory inode {d.ino} has no ".." entry')
        up = self.iget(found.ino)
        if not up.is_dir():
            raise Corrupt(f'directory inode {d.ino}: its ".." names a non-directory')
        return up

    @staticmethod
    def _name_in(d: Ext2Inode, ino: int) -> bytes:
        for f in dirops.listing(d):
            if f.ino == ino and f.name not in (b".", b".."):
                return f.name
        raise Corrupt(f"directory inode {ino} is not listed in its parent, inode {d.ino}")

    def _is_ancestor(self, a: Ext2Inode, d: Ext2Inode) -> bool:
        """Whether directory `a` is `d` or above it."""
        cur = d
        for _ in range(self.vol.geo.inodes_count + 1):
            if cur is a:
                return True
            if cur.ino == ROOT_INO:
                return False
            cur = self._up(cur)
        raise Corrupt(f'directory inode {d.ino}: its ".." entries form a loop')
