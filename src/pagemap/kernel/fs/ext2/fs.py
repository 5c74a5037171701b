"""The ext2 filesystem object: mount, paths, and the calls a user makes.

Paths are absolute within the filesystem ("/a/b"; a leading "/" may be left
out).  Symlinks are followed in every component but the last, and in the
last too where Linux's calls follow it (open, stat, truncate); absolute
targets start again at the filesystem's root.  Errors are Linux's: ENOENT,
EEXIST, ENOTDIR, EISDIR, ENOTEMPTY, EINVAL (renaming a directory into
itself, readlink of a non-symlink), ENAMETOOLONG (a name over 255 bytes),
EMLINK, ELOOP, EROFS, ENOSPC, and EUCLEAN for corruption.

Rules.  `ns_lock` (a sleeping lock) serialises every namespace operation and
the inode cache: lookups, creation, links, renames, removal, sync, unmount.
File data (read, write, mmap, truncate) does not take it; those take the
inode's own locks (inode.py).  The flusher takes none of the locks here.
An inode stays cached while mounted; one whose last link goes while it is
still open, or mapped, is freed at its last close, or at unmount.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass

from pagemap.kernel.blockdev import BlockDevice
from pagemap.kernel.errors import AlreadyClosed, InvalidArgument, KernelError
from pagemap.kernel.fs.ext2 import dir as dirops
from pagemap.kernel.fs.ext2.errors import (
    Busy,
    Corrupt,
    Exists,
    IsADirectory,
    NameTooLong,
    NoSpace,
    NotADirectory,
    NotEmpty,
    NotFound,
    ReadOnly,
    SymlinkLoop,
    TooManyLinks,
)
from pagemap.kernel.fs.ext2.inode import (
    Ext2Inode,
    check_disk_inode,
    new_extra,
    read_disk_inode,
)
from pagemap.kernel.fs.ext2.layout import (
    FAST_SYMLINK_MAX,
    FT_DIR,
    LINK_MAX,
    N_BLOCKS,
    NAME_LEN,
    ROOT_INO,
    S_IFDIR,
    S_IFLNK,
    S_IFMT,
    S_IFREG,
    VALID_FS,
    DiskInode,
    dir_entry_type,
)
from pagemap.kernel.fs.ext2.super import check_superblock, read_groups, read_superblock
from pagemap.kernel.fs.ext2.volume import Clock, Volume
from pagemap.kernel.hostfs import parse_mode
from pagemap.kernel.owner import as_int
from pagemap.kernel.radix import ALL_PAGES
from pagemap.kernel.vfs import Buffer, File, PageMapFactory
from pagemap.sync.executor import Executor

MAX_SYMLINKS = 40  # as Linux's MAXSYMLINKS
PATH_MAX = 4096


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


def encode(name: str) -> bytes:
    """A name or path as ext2 stores it: bytes (names that are not UTF-8 come
    back from readdir as surrogate escapes, as os.listdir gives them)."""
    return os.fsencode(name)


class Ext2File(File):
    """An open file of an ext2 filesystem: pread/pwrite, and read/write at a
    position of its own."""

    inode: Ext2Inode

    def __init__(
        self, fs: Ext2FS, inode: Ext2Inode, path: str, mode: str, readable: bool, writable: bool
    ) -> None:
        super().__init__(inode, path, mode, readable, writable)
        self.fs = fs
        self.pos = 0
        # The file's references, as Linux's f_count: one for the open file,
        # one for each call in progress (fdget).  The last put, not close,
        # is the last close that may free an unlinked inode: a pwrite let in
        # before a racing close would otherwise write into an inode (and
        # allocate blocks for it) that the close had just freed
        # (ext2-close-unlinked; the close-frees-in-use mutant).  The calls
        # that change the inode take one (pwrite, truncate, fsync); a pread
        # does not: the last close frees an inode as a truncate to 0 does
        # (the size first, then the pages, each waited for under its lock,
        # then the blocks), so a pread racing it reads what a pread racing
        # that truncate reads (ext2-truncate-read), and the reference would
        # only make every pread contend with every other call on the file.
        self._refs = inode.executor.atomic(1, f"{inode.name}.file.refs")

    def _get(self, op: str) -> None:
        """A reference for a call on this file, or EBADF once it is closed."""
        refs = self._refs
        while True:
            n = refs.load()
            if not n:
                break
            if refs.cas(n, n + 1):
                if not self._closed.load():
                    return
                self._put()  # closed meanwhile: the call comes after the close
                break
        raise AlreadyClosed(f"{self.path}: {op} on a closed file")

    def _put(self) -> None:
        if self._refs.fetch_add(-1) == 1:
            self.inode.open_count.fetch_add(-1)
            self.fs.closed(self.inode)

    def pwrite(self, data: Buffer, offset: int) -> int:
        self._get("pwrite")
        try:
            return super().pwrite(data, offset)
        finally:
            self._put()

    def truncate(self, size: int) -> None:
        self._get("truncate")
        try:
            super().truncate(size)
        finally:
            self._put()

    def fsync(self) -> None:
        self._get("fsync")
        try:
            super().fsync()
        finally:
            self._put()

    def __enter__(self) -> Ext2File:
        return self

    def read(self, nbytes: int = -1) -> bytes:
        if nbytes < 0:
            nbytes = max(0, self.size - self.pos)
        data = self.pread(nbytes, self.pos)
        self.pos += len(data)
        return data

    def write(self, data: Buffer) -> int:
        done = self.pwrite(data, self.pos)
        self.pos += done
        return done

    def seek(self, pos: int) -> int:
        if pos < 0:
            raise InvalidArgument(f"{self.path}: seek to {pos}: a position may not be negative")
        self.pos = pos
        return pos

    def tell(self) -> int:
        return self.pos

    def close(self) -> None:
        """Close this file; closing twice is harmless.  The inode's last close
        comes with the last reference: here, or at the end of a call still in
        progress."""
        if not self._closed.swap(1):
            self._put()


class Ext2FS:
    def __init__(self, vol: Volume, make_page_map: PageMapFactory) -> None:
        self.vol = vol
        self.executor = vol.executor
        self.make_page_map = make_page_map
        self.ns_lock = vol.executor.semaphore(1, f"{vol.name}.ns_lock")
        self.inodes: dict[int, Ext2Inode] = {}
        self.mount_state = vol.sb.state
        self.holder = object()  # what claims the device while mounted

    def __repr__(self) -> str:
        mode = "ro" if self.vol.readonly else "rw"
        return f"Ext2FS({self.vol.name}, {mode}, {self.vol.geo.block_size}-byte blocks)"

    @property
    def readonly(self) -> bool:
        return self.vol.readonly

    @contextlib.contextmanager
    def _ns(self, what: str) -> Iterator[None]:
        self.vol.check_mounted(what)
        self.ns_lock.down()
        try:
            self.vol.check_mounted(what)
            yield
        finally:
            self.ns_lock.up()

    # -- inodes ---------------------------------------------------------------------------
    def iget(self, ino: int) -> Ext2Inode:
        """The cached inode `ino`, read and checked on first use (ns_lock held)."""
        inode = self.inodes.get(ino)
        if inode is not None:
            return inode
        if not 1 <= ino <= self.vol.geo.inodes_count:
            raise Corrupt(f"inode number {ino} is outside 1..{self.vol.geo.inodes_count}")
        disk, extra = read_disk_inode(self.vol, ino)
        check_disk_inode(self.vol, ino, disk)
        inode = Ext2Inode(self.vol, self.make_page_map, ino, disk, extra)
        self.inodes[ino] = inode
        return inode

    def _new_inode(self, parent: Ext2Inode, mode: int) -> Ext2Inode:
        vol = self.vol
        is_dir = mode & S_IFMT == S_IFDIR
        ino = vol.alloc.alloc_inode(parent.ino, is_dir)
        try:
            old, _ = read_disk_inode(vol, ino)
            if old.mode and old.links_count and not old.dtime:
                raise Corrupt(
                    f"inode {ino}: the inode bitmap says it is free, but it is in use "
                    f"(mode {old.mode:#o}, {old.links_count} links)"
                )
            now = vol.now()
            disk = DiskInode(
                mode=mode,
                atime=now,
                ctime=now,
                mtime=now,
                links_count=2 if is_dir else 1,
                generation=old.generation + 1 & 0xFFFFFFFF,
            )
            inode = Ext2Inode(vol, self.make_page_map, ino, disk, new_extra(vol, now))
        except BaseException:
            vol.alloc.free_inode(ino, is_dir)
            raise
        inode.fast_symlink = False
        inode.dirty = True
        self.inodes[ino] = inode
        return inode

    def _discard_new(self, inode: Ext2Inode) -> None:
        """Undo _new_inode after a later step failed (nothing names it): free
        its blocks, stamp it deleted and give its number back, as Linux's
        ext2 does with an inode whose creation failed (iput of a new inode
        with no links).

        If that fails too (no frame for a bitmap's buffer), it stays cached
        as an orphan with no links, and unmount (or the next namespace call
        that frees it) finishes the job: the bitmap never names an inode
        that is not written as in use, nor the other way round
        (test_mkdir_on_a_full_image_leaves_no_inode_behind)."""
        inode.disk.links_count = 0
        try:
            self._maybe_free(inode)
        except OSError:
            if inode.deleted:
                raise

    def _maybe_free(self, inode: Ext2Inode) -> None:
        """Free an inode whose last link went, if nobody has it open or mapped."""
        if inode.links or inode.deleted:
            return
        if self._in_use(inode):
            return  # an orphan until its last close, or unmount
        inode.lock.down()
        try:
            inode.release_blocks()
        finally:
            inode.lock.up()
        inode.disk.dtime = self.vol.now()
        inode.disk.links_count = 0
        inode.write_inode()
        self.vol.alloc.free_inode(inode.ino, inode.is_dir())
        inode.deleted = True
        self.inodes.pop(inode.ino, None)

    def _free_or_defer(self, inode: Ext2Inode) -> None:
        """_maybe_free after a call that has already happened (unlink, rmdir,
        rename over a file, a last close): if freeing fails (no frame, a host
        error), the call still happened, as on Linux, where the last iput
        reports nothing; the inode stays cached with no links, an orphan, and
        unmount frees it (the ext2 fault soak)."""
        try:
            self._maybe_free(inode)
        except Corrupt:
            raise
        except OSError:
            pass

    @staticmethod
    def _in_use(inode: Ext2Inode) -> bool:
        """Open or mapped: its blocks are still its own (ext2-unlink-reuse;
        mutant ext2-frees-open-file)."""
        return bool(inode.open_count.load() or inode.mapping.vmrs)

    def closed(self, inode: Ext2Inode) -> None:
        """A File was closed: free its inode if that was the last user of an
        unlinked one."""
        if inode.links or inode.deleted or not self.vol.mounted:
            return
        with self._ns("close"):
            self._free_or_defer(inode)

    # -- paths ------------------------------------------------------------------------------
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

    # -- reading the tree -------------------------------------------------------------------
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

    # -- files ------------------------------------------------------------------------------
    def open(self, path: str, mode: str = "r") -> Ext2File:
        """Open a regular file ("r", "r+", "w", "w+" as in Python; "w" creates
        and truncates), following symlinks."""
        readable, writable, create, truncate = parse_mode(mode)
        if writable:
            self.vol.check_writable(f"open {path!r} for writing")
        with self._ns("open"):
            inode = self._open_inode(path, create)
            if inode.is_dir():
                raise IsADirectory(f"{path}: is a directory")
            if not inode.is_reg():
                raise InvalidArgument(f"{path}: not a regular file")
            file = Ext2File(self, inode, path, mode, readable, writable)
        if truncate:
            try:
                inode.truncate(0)
            except BaseException:
                file.close()
                raise
        return file

    def _open_inode(self, path: str, create: bool) -> Ext2Inode:
        for _ in range(MAX_SYMLINKS):
            parent, name, slash = self._parent(path, IsADirectory)
            child = self._child(parent, name)
            if child is not None and child.is_symlink():
                target = child.read_link()
                if not create:
                    return self._walk(parent, [p for p in target.split(b"/") if p], True, str(path))
                # Creating through a symlink creates its target, as Linux does.
                base = b"" if target.startswith(b"/") else self._path_of(parent)
                path = os.fsdecode(base + b"/" + target)
                continue
            if child is not None:
                if slash and not child.is_dir():
                    raise NotADirectory(f"{path!r}: not a directory")
                return child
            if not create:
                raise NotFound(f"{path!r}: no such file or directory")
            if slash:
                raise IsADirectory(f"{path!r}: cannot create a regular file with a trailing /")
            return self._create(parent, name, S_IFREG | 0o644)
        raise SymlinkLoop(f"{path!r}: too many levels of symbolic links")

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

    def create(self, path: str, perm: int = 0o644) -> Ext2File:
        """Create a new regular file (EEXIST if the name is taken) and open it "r+"."""
        self.vol.check_writable(f"create {path!r}")
        with self._ns("create"):
            parent, name, slash = self._parent(path, Exists)
            if self._child(parent, name) is not None or name == b"..":
                raise Exists(f"{path}: already exists")
            if slash:
                raise IsADirectory(f"{path!r}: cannot create a regular file with a trailing /")
            inode = self._create(parent, name, S_IFREG | perm & 0o7777)
            return Ext2File(self, inode, path, "r+", True, True)

    def _create(self, parent: Ext2Inode, name: bytes, mode: int) -> Ext2Inode:
        self.vol.check_writable("create")
        inode = self._new_inode(parent, mode)
        try:
            dirops.add(parent, name, inode.ino, dir_entry_type(mode, True))
        except BaseException:
            self._discard_new(inode)
            raise
        inode.mark_dirty()
        parent.mark_dirty()
        return inode

    def truncate(self, path: str, size: int) -> None:
        size = as_int(size, f"truncate {path!r}", "the size")
        self.vol.check_writable(f"truncate {path!r}")
        with self._ns("truncate"):
            inode = self._lookup(path, follow=True)
        if inode.is_dir():
            raise IsADirectory(f"{path}: is a directory")
        if not inode.is_reg():
            raise InvalidArgument(f"{path}: not a regular file")
        inode.truncate(size)

    def read_file(self, path: str) -> bytes:
        """The whole of a regular file (a convenience over open and pread)."""
        with self.open(path, "r") as f:
            return f.pread(f.size, 0)

    def write_file(self, path: str, data: Buffer) -> None:
        """Create or replace a regular file's contents (open "w", pwrite, close)."""
        with self.open(path, "w") as f:
            if f.pwrite(data, 0) != len(memoryview(data)):
                raise NoSpace(f"{path}: the filesystem filled up partway through")

    # -- the namespace ------------------------------------------------------------------------
    def mkdir(self, path: str, perm: int = 0o755) -> None:
        self.vol.check_writable(f"mkdir {path!r}")
        with self._ns("mkdir"):
            parent, name, _ = self._parent(path, Exists)
            if self._child(parent, name) is not None or name == b"..":
                raise Exists(f"{path}: already exists")
            if parent.links >= LINK_MAX:
                raise TooManyLinks(f"{path}: its parent already has {LINK_MAX} links")
            inode = self._new_inode(parent, S_IFDIR | perm & 0o7777)
            try:
                dirops.init_block(inode, parent.ino)
                dirops.add(parent, name, inode.ino, FT_DIR)
            except BaseException:
                self._discard_new(inode)
                raise
            parent.disk.links_count += 1
            inode.mark_dirty()
            parent.mark_dirty()

    def rmdir(self, path: str) -> None:
        self.vol.check_writable(f"rmdir {path!r}")
        with self._ns("rmdir"):
            parent, name, _ = self._parent(path)
            if name == b".":
                raise InvalidArgument(f"{path}: cannot remove '.'")
            if name == b"..":
                raise NotEmpty(f"{path}: cannot remove '..'")
            child = self._child(parent, name)
            if child is None:
                raise NotFound(f"{path}: no such file or directory")
            if not child.is_dir():
                raise NotADirectory(f"{path}: not a directory")
            if child.ino == ROOT_INO:
                raise Busy(f"{path}: the root directory")
            if not dirops.is_empty(child):
                raise NotEmpty(f"{path}: directory not empty")
            dirops.remove(parent, name)
            parent.disk.links_count = max(0, parent.links - 1)
            child.disk.links_count = 0
            child.touch()
            parent.mark_dirty()
            self._free_or_defer(child)

    def unlink(self, path: str) -> None:
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
            child.disk.links_count -= 1
            child.touch(mtime=False)
            parent.mark_dirty()
            child.mark_dirty()
            self._free_or_defer(child)

    def link(self, old: str, new: str) -> None:
        """A new name for an existing non-directory (a symlink is linked itself)."""
        self.vol.check_writable(f"link {new!r}")
        with self._ns("link"):
            inode = self._lookup(old, follow=False)
            parent, name, slash = self._parent(new, Exists)
            if self._child(parent, name) is not None or name == b"..":
                raise Exists(f"{new}: already exists")
            if inode.is_dir():
                raise KernelError(
                    f"{old}: hard links to directories are not allowed", errno=errno.EPERM
                )
            if slash:
                raise NotFound(f"{new!r}: no such directory")
            if inode.links >= LINK_MAX:
                raise TooManyLinks(f"{old}: already has {LINK_MAX} links")
            dirops.add(parent, name, inode.ino, dir_entry_type(inode.mode, True))
            inode.disk.links_count += 1
            inode.touch(mtime=False)
            inode.mark_dirty()
            parent.mark_dirty()

    def symlink(self, target: str, path: str) -> None:
        """A symbolic link at `path` whose contents are `target`: in the inode
        itself when shorter than 60 bytes, else in a block of its own."""
        self.vol.check_writable(f"symlink {path!r}")
        raw = encode(target)
        if not raw:
            raise NotFound(f"{path}: a symlink's target may not be empty")
        if b"\0" in raw:
            raise InvalidArgument(f"{path}: a symlink's target may not contain NUL")
        bs = self.vol.geo.block_size
        if len(raw) + 1 > bs:
            raise NameTooLong(f"{path}: a target of {len(raw)} bytes does not fit in a block")
        with self._ns("symlink"):
            parent, name, _ = self._parent(path, Exists)
            if self._child(parent, name) is not None or name == b"..":
                raise Exists(f"{path}: already exists")
            inode = self._new_inode(parent, S_IFLNK | 0o777)
            try:
                self._fill_symlink(inode, raw)
                dirops.add(parent, name, inode.ino, dir_entry_type(S_IFLNK, True))
            except BaseException:
                self._discard_new(inode)
                raise
            inode.mark_dirty()
            parent.mark_dirty()

    def _fill_symlink(self, inode: Ext2Inode, raw: bytes) -> None:
        bs = self.vol.geo.block_size
        if len(raw) <= FAST_SYMLINK_MAX:
            padded = raw.ljust(4 * N_BLOCKS, b"\0")
            inode.fast_symlink = True
            inode.disk.block = tuple(
                int.from_bytes(padded[i : i + 4], "little") for i in range(0, len(padded), 4)
            )
        else:
            blk = inode.bmap.allocate(0, fresh=False)
            self.vol.dev.write_blocks(blk, raw.ljust(bs, b"\0"), bs)
        inode.size_word.store(len(raw))

    def rename(self, old: str, new: str) -> None:
        """Move `old` to `new`, replacing what `new` names, as Linux's
        rename(2), its checks in Linux's order."""
        self.vol.check_writable(f"rename {old!r}")
        with self._ns("rename"):
            op, oname, oslash = self._parent(old)
            np, nname, nslash = self._parent(new)
            if oname in (b".", b"..") or nname in (b".", b".."):
                raise Busy(f"cannot rename {old!r} to {new!r}: '.' or '..'")
            src = self._child(op, oname)
            if src is None:
                raise NotFound(f"{old}: no such file or directory")
            dst = self._child(np, nname)
            if (oslash or nslash) and not src.is_dir():
                raise NotADirectory(f"{old}: not a directory")
            if src.is_dir() and self._is_ancestor(src, np):
                raise InvalidArgument(f"cannot move {old!r} into itself ({new!r})")
            if dst is not None and dst.is_dir() and self._is_ancestor(dst, op):
                raise NotEmpty(f"{new}: directory not empty (it holds {old!r})")
            if dst is src:
                return
            self._check_rename(src, dst, np, new)
            self._do_rename(op, oname, src, np, nname, dst)

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

    def _check_rename(self, src: Ext2Inode, dst: Ext2Inode | None, np: Ext2Inode, new: str) -> None:
        if dst is not None and src.is_dir() and not dst.is_dir():
            raise NotADirectory(f"{new}: not a directory")
        if dst is not None and not src.is_dir() and dst.is_dir():
            raise IsADirectory(f"{new}: is a directory")
        if dst is not None and dst.is_dir() and not dirops.is_empty(dst):
            raise NotEmpty(f"{new}: directory not empty")
        if src.is_dir() and dst is None and np.links >= LINK_MAX:
            raise TooManyLinks(f"{new}: its parent already has {LINK_MAX} links")

    def _do_rename(
        self,
        op: Ext2Inode,
        oname: bytes,
        src: Ext2Inode,
        np: Ext2Inode,
        nname: bytes,
        dst: Ext2Inode | None,
    ) -> None:
        ftype = dir_entry_type(src.mode, True)
        if dst is None:
            dirops.add(np, nname, src.ino, ftype)  # ENOSPC here changes nothing
        else:
            dirops.retarget(np, nname, src.ino, ftype)
        dirops.remove(op, oname)
        if src.is_dir() and op is not np:
            dirops.retarget(src, b"..", np.ino, FT_DIR)
            op.disk.links_count -= 1
            np.disk.links_count += 1
        if dst is not None:
            if dst.is_dir():
                np.disk.links_count -= 1  # dst's ".." is gone
                dst.disk.links_count = 0
            else:
                dst.disk.links_count -= 1
            dst.touch(mtime=False)
        src.touch(mtime=False)
        for inode in {op.ino: op, np.ino: np, src.ino: src}.values():
            inode.mark_dirty()
        if dst is not None:
            dst.mark_dirty()
            self._free_or_defer(dst)

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

    def check_quiescent(self) -> list[str]:
        """What is wrong when no task runs: locks held; [] if all is well."""
        problems: list[str] = []
        if self.ns_lock.count != 1:
            problems.append(f"{self.vol.name}: the namespace lock is still held")
        for inode in self.inodes.values():
            if inode.lock.count != 1:
                problems.append(f"{inode.name}: the inode lock is still held")
            if inode.bmap.lock.held:
                problems.append(f"{inode.name}: the block-map lock is still held")
        for group in self.vol.groups:
            if group.lock.held:
                problems.append(f"{self.vol.name}: group {group.index}'s lock is still held")
        return problems


def mount(
    executor: Executor,
    dev: BlockDevice,
    make_page_map: PageMapFactory,
    readonly: bool,
    clock: Clock,
) -> Ext2FS:
    """Mount the ext2 filesystem on `dev`; every check of super.py first."""
    token = object()
    dev.claim(token)
    locked = False
    try:
        sb = read_superblock(dev)
        geo = check_superblock(sb, dev.nr_bytes, writable=not readonly)
        if not readonly and not dev.io.writable:
            raise ReadOnly(f"{dev.name}: the image is read-only on the host: mount it read-only")
        if not readonly:
            # claim() keeps a second mount of this machine off the device;
            # the host lock keeps off another Machine's (its own descriptor,
            # its own cache), whose writes would interleave with ours
            # (test_a_second_machine_cannot_mount_an_image_read_write).  A
            # read-only mount takes none: it writes nothing.
            dev.io.lock_exclusive("mount")
            locked = True
        dev.set_block_size(geo.block_size)
        groups = read_groups(dev, geo, executor)
        vol = Volume(executor, dev, sb, geo, groups, readonly, clock)
        fs = Ext2FS(vol, make_page_map)
        fs.holder = token
        if not fs.root.is_dir():
            raise Corrupt(f"{dev.name}: the root inode is not a directory")
        if not readonly:
            sb.mnt_count = (sb.mnt_count + 1) & 0xFFFF
            sb.mtime = vol.now()
            sb.state &= ~VALID_FS
            vol.write_super()
    except BaseException:
        dev.mapping.remove_contig(0, ALL_PAGES)
        dev.release(token)
        if locked:
            dev.io.unlock()
        raise
    return fs
