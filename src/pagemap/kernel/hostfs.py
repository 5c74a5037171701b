"""Files whose pages live in real host files.

The host file is the backing store, the way a disk is for a real kernel:
readpage is a pread (zero-filled past the host's end), writepage a pwrite of
the bytes below the inode's size, fsync an fsync, each through a HostIO
(kernel/hostio.py).

HostFS keeps one inode per host file (by device and inode number), so opening
a file twice, by any path, gives the same inode and the same page map.
"""

from __future__ import annotations

import errno
import os

from pagemap.hw.memory import PGSIZE
from pagemap.kernel.errors import InvalidArgument, KernelError
from pagemap.kernel.fallocate import PUNCH
from pagemap.kernel.hostio import HostFaults, HostIO, host_path, open_host, regular_file_stat
from pagemap.kernel.page import PG_UPTODATE, Page
from pagemap.kernel.pagemap import PageMap
from pagemap.kernel.vfs import File, Inode, PageMapFactory
from pagemap.sync.core import READ, WRITE
from pagemap.sync.executor import Executor

# mode -> (readable, writable, create, truncate), as Python's open() reads them.
OPEN_MODES = {
    "r": (True, False, False, False),
    "r+": (True, True, False, False),
    "w": (False, True, True, True),
    "w+": (True, True, True, True),
}


class HostInode(Inode):
    """An inode whose pages are read from and written to a host file."""

    def __init__(
        self,
        executor: Executor,
        make_page_map: PageMapFactory,
        name: str,
        size: int,
        io: HostIO,
    ) -> None:
        self.io = io
        # Orders writepage's (size, pwrite) against truncate's (size,
        # ftruncate): a writepage that read the old size must not pwrite old
        # bytes after the host file was cut, growing it back
        # (test_truncate_racing_writeback_never_resurrects).
        self.host_lock = executor.spinlock(f"{name}.host_lock")
        super().__init__(executor, make_page_map, name, size)
        self.max_size = io.fsize_rlimit(self.max_size)
        self._probed = False

    @property
    def faults(self) -> HostFaults:
        return self.io.faults

    def _bytes_in_page(self, page: Page) -> int:
        """How many of the page's bytes lie below the file's size."""
        return max(0, min(PGSIZE, self.size_word.load() - page.index * PGSIZE))

    def readpage(self, pm: PageMap, page: Page) -> None:
        want = self._bytes_in_page(page)
        data = self.io.pread(want, page.index * PGSIZE) if want else b""
        self.executor.point("frame_write", page.ppn, WRITE)
        page.data[: len(data)] = data
        page.data[len(data) :] = bytes(PGSIZE - len(data))
        page.flags.fetch_or(PG_UPTODATE)

    def writepage(self, pm: PageMap, page: Page) -> None:
        with self.host_lock:
            nbytes = self._bytes_in_page(page)
            if nbytes:
                self.executor.point("frame_read", page.ppn, READ)
                self.io.pwrite(page.data[:nbytes], page.index * PGSIZE)

    def set_size(self, size: int) -> None:
        """Cut (or extend) the host file, then publish the size: as a Linux
        filesystem over a server does its setattr, so that a host ftruncate
        that fails leaves a size nobody saw change (eio-truncate: a fault or
        a pread between the size and a failed cut saw a file that was never
        cut).  Both under host_lock, so writepage never sees the old size
        with the host file already cut."""
        with self.host_lock:
            self.io.ftruncate(size)
            self.size_word.store(size)

    def allocate_backing(self, mode: int, offset: int, length: int) -> None:
        """The host's own fallocate; a grown host file is the new size."""
        with self.host_lock:
            self.io.fallocate(mode, offset, length)

    def punch_backing(self, offset: int, length: int) -> None:
        """The host's FALLOC_FL_PUNCH_HOLE | KEEP_SIZE, under host_lock: a
        writepage of a partial page at the hole's edge (zeroed, dirty) lands
        before or after it, never half-way."""
        with self.host_lock:
            self.io.fallocate(PUNCH, offset, length)

    def sync_backing(self) -> None:
        self.io.fsync()

    def largest_size(self) -> int:
        # Asked only by writes and truncates past SMALL_FILE_SIZE, so building
        # a machine per schedule (the checker) seeks nothing.  Two writers may
        # both ask: they find the same limit.
        if not self._probed:
            self.max_size = self.io.fs_size_limit(self.max_size)
            self._probed = True
        return self.max_size


class HostFile(File):
    """An open host file; its inode's `faults` make host calls fail."""

    inode: HostInode

    def __init__(
        self, inode: HostInode, path: str, mode: str, readable: bool, writable: bool
    ) -> None:
        super().__init__(inode, path, mode, readable, writable)

    @property
    def faults(self) -> HostFaults:
        return self.inode.faults


def parse_mode(mode: str) -> tuple[bool, bool, bool, bool]:
    """(readable, writable, create, truncate) for "r", "r+", "w", "w+" (a "b"
    anywhere is accepted and ignored: files are always binary)."""
    if not isinstance(mode, str):
        raise TypeError(f"open: the mode must be a str such as 'r+', not {type(mode).__name__}")
    bits = OPEN_MODES.get(mode.replace("b", "", 1))
    if bits is None:
        raise InvalidArgument(f"open mode {mode!r} is not one of r, r+, w, w+")
    return bits


class HostFS:
    """The machine's table of host-file inodes, and open()."""

    def __init__(self, executor: Executor, make_page_map: PageMapFactory) -> None:
        self.executor = executor
        self.make_page_map = make_page_map
        # Keyed by (st_dev, st_ino): plain ints, so iteration order is stable.
        self.inodes: dict[tuple[int, int], HostInode] = {}
        self.lock = executor.spinlock("hostfs.inodes")

    def open(self, path: str | os.PathLike[str], mode: str = "r+") -> HostFile:
        """Open a host file through the page cache ("r", "r+", "w", "w+")."""
        readable, writable, create, truncate = parse_mode(mode)
        name = host_path(path)
        fd, host_writable = open_host(name, writable, create)
        st = regular_file_stat(name, fd)
        inode, fd_used = self._inode_for(name, fd, host_writable, st)
        if not fd_used:
            os.close(fd)
        if writable and not inode.io.writable:
            raise KernelError(
                f"{name}: was first opened where the host allowed only reading",
                errno=errno.EACCES,
            )
        file = HostFile(inode, name, mode, readable, writable)
        if truncate:
            try:
                inode.truncate(0)
            except BaseException:
                file.close()
                raise
        return file

    def _inode_for(
        self, name: str, fd: int, host_writable: bool, st: os.stat_result
    ) -> tuple[HostInode, bool]:
        """The inode of this host file, made from `fd` if it is new; and
        whether `fd` went into it."""
        key = (st.st_dev, st.st_ino)
        with self.lock:
            inode = self.inodes.get(key)
            if inode is not None:
                return inode, False
            label = os.path.basename(name) or name
            io = HostIO(self.executor, fd, label, host_writable)
            inode = HostInode(self.executor, self.make_page_map, label, st.st_size, io)
            self.inodes[key] = inode
            return inode, True

    def sync(self) -> None:
        """fsync every inode: dirty pages, and stores through shared mappings,
        reach their host files.  Every inode is tried; the first error is
        raised at the end (what failed stays dirty)."""
        first_error: OSError | None = None
        for inode in list(self.inodes.values()):
            if inode.released:
                continue
            try:
                inode.fsync()
            except OSError as exc:
                first_error = first_error or exc
        if first_error is not None:
            raise first_error

    def release(self) -> None:
        """Close every host descriptor; every open file answers EBADF after."""
        for inode in self.inodes.values():
            inode.released = True
            inode.io.close()

    def check_quiescent(self) -> list[str]:
        """What is wrong with the inodes when no task runs; [] if all is well."""
        problems: list[str] = []
        for inode in self.inodes.values():
            if inode.lock.count != 1:
                problems.append(f"{inode.name}: the inode lock is still held")
            if inode.host_lock.held:
                problems.append(f"{inode.name}: the host lock is still held")
        return problems


__all__ = ["HostFS", "HostFile", "HostInode"]
