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

Where each part lives: Ext2FS here holds the inode cache (iget, new inodes,
freeing), open/create/truncate of files, and mount; its mixins hold
lookup.py (paths), stat.py (reading the tree), namei.py (the calls that
change names) and unmount.py (sync and unmount); file.py is the open file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from pagemap.kernel.blockdev import BlockDevice
from pagemap.kernel.errors import InvalidArgument
from pagemap.kernel.fs.ext2 import dir as dirops
from pagemap.kernel.fs.ext2.errors import (
    Corrupt,
    Exists,
    IsADirectory,
    NoSpace,
    NotADirectory,
    NotFound,
    ReadOnly,
    SymlinkLoop,
)
from pagemap.kernel.fs.ext2.file import Ext2File as Ext2File
from pagemap.kernel.fs.ext2.inode import Ext2Inode
from pagemap.kernel.fs.ext2.itable import check_disk_inode, new_extra, read_disk_inode
from pagemap.kernel.fs.ext2.layout import (
    S_IFDIR,
    S_IFMT,
    S_IFREG,
    VALID_FS,
    DiskInode,
    dir_entry_type,
)
from pagemap.kernel.fs.ext2.lookup import MAX_SYMLINKS
from pagemap.kernel.fs.ext2.lookup import encode as encode
from pagemap.kernel.fs.ext2.namei import Namespace
from pagemap.kernel.fs.ext2.stat import DirEntry as DirEntry
from pagemap.kernel.fs.ext2.stat import ReadTree
from pagemap.kernel.fs.ext2.stat import Stat as Stat
from pagemap.kernel.fs.ext2.stat import StatFS as StatFS
from pagemap.kernel.fs.ext2.super import check_superblock, read_groups, read_superblock
from pagemap.kernel.fs.ext2.unmount import SyncUnmount
from pagemap.kernel.fs.ext2.volume import Clock, Volume
from pagemap.kernel.hostfs import parse_mode
from pagemap.kernel.owner import as_int
from pagemap.kernel.radix import ALL_PAGES
from pagemap.kernel.vfs import Buffer, PageMapFactory
from pagemap.sync.executor import Executor


class Ext2FS(Namespace, ReadTree, SyncUnmount):
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
        inode.set_links(0)
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
        inode.set_links(0)
        inode.write_inode()
        self.vol.alloc.free_inode(inode.ino, inode.is_dir())
        inode.set_deleted()
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
        if not inode.may_be_orphan() or not self.vol.mounted:
            return
        with self._ns("close"):
            self._free_or_defer(inode)

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
