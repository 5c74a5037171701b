"""Files whose pages live in real host files.

The host file is the backing store, the way a disk is for a real kernel:
readpage is a pread (zero-filled past the host's end), writepage a pwrite of
the bytes below the inode's size, fsync an fsync.  Every host call goes
through HostIO, which makes it a scheduling point, lets tests make the next
few calls fail (HostFaults), and turns any host error into EIO.

HostFS keeps one inode per host file (by device and inode number), so opening
a file twice, by any path, gives the same inode and the same page map.
"""

from __future__ import annotations

import errno
import os
import stat
import weakref

from pagemap.hw.memory import PGSIZE
from pagemap.kernel.errors import InvalidArgument, IOFailure, KernelError
from pagemap.kernel.page import PG_UPTODATE, Page
from pagemap.kernel.pagemap import PageMap
from pagemap.kernel.vfs import Buffer, File, Inode, PageMapFactory
from pagemap.sync.atomic import AtomicWord
from pagemap.sync.core import READ, WRITE
from pagemap.sync.executor import Executor

FAULT_KINDS = ("read", "write", "truncate", "sync")

# mode -> (readable, writable, create, truncate), as Python's open() reads them.
OPEN_MODES = {
    "r": (True, False, False, False),
    "r+": (True, True, False, False),
    "w": (False, True, True, True),
    "w+": (True, True, True, True),
}


class HostFaults:
    """Makes the next N host calls of a kind fail with EIO, as a failing disk
    would: `faults.fail("write", 2)`.  Kinds: read, write, truncate, sync."""

    def __init__(self, executor: Executor, name: str) -> None:
        self._pending: dict[str, AtomicWord] = {
            kind: executor.atomic(0, f"{name}.faults.{kind}") for kind in FAULT_KINDS
        }

    def fail(self, kind: str, count: int = 1) -> None:
        if kind not in self._pending or count < 0:
            raise InvalidArgument(
                f"cannot fail {count} host call(s) of kind {kind!r}: "
                f"the kinds are {', '.join(FAULT_KINDS)} and the count is not negative"
            )
        self._pending[kind].fetch_add(count)

    def pending(self, kind: str) -> int:
        return self._pending[kind].load()

    def take(self, kind: str) -> bool:
        """True if this call of `kind` is to fail (using up one fault)."""
        word = self._pending[kind]
        while True:
            left = word.load()
            if not left:
                return False
            if word.cas(left, left - 1):
                return True


class HostIO:
    """A host file descriptor, as the kernel's backing store.

    The descriptor is closed by close() or, failing that, when the object is
    collected along with its machine, so building many machines leaks none.
    """

    def __init__(self, executor: Executor, fd: int, name: str, writable: bool) -> None:
        self.executor = executor
        self.fd = fd
        self.name = name
        self.writable = writable
        self.faults = HostFaults(executor, name)
        self.nr_reads = executor.atomic(0, f"{name}.nr_reads")
        self.nr_writes = executor.atomic(0, f"{name}.nr_writes")
        self._finalizer = weakref.finalize(self, os.close, fd)
        executor.register(self)

    def __repr__(self) -> str:
        return f"HostIO({self.name}, fd={self.fd})"

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        self._finalizer()

    def _enter(self, kind: str, what: str) -> None:
        self.executor.point(f"host_{kind}", self, READ if kind == "read" else WRITE)
        if self.faults.take(kind):
            raise IOFailure(f"{self.name}: {what} failed (injected host I/O error)")
        if self.closed:
            raise IOFailure(f"{self.name}: {what} after the host file was closed")

    def _failed(self, what: str, exc: OSError) -> IOFailure:
        return IOFailure(f"{self.name}: {what} failed on the host: {exc.strerror or exc}")

    def pread(self, nbytes: int, offset: int) -> bytes:
        """Up to `nbytes` from `offset`; fewer only at the host file's end."""
        what = f"read of {nbytes} bytes at {offset}"
        self._enter("read", what)
        parts: list[bytes] = []
        got = 0
        try:
            while got < nbytes:
                part = os.pread(self.fd, nbytes - got, offset + got)
                if not part:
                    break
                parts.append(part)
                got += len(part)
        except OSError as exc:
            raise self._failed(what, exc) from exc
        self.nr_reads.fetch_add(1)
        return b"".join(parts)

    def pwrite(self, data: Buffer, offset: int) -> None:
        src = memoryview(data).cast("B")
        what = f"write of {len(src)} bytes at {offset}"
        self._enter("write", what)
        done = 0
        try:
            while done < len(src):
                done += os.pwrite(self.fd, src[done:], offset + done)
        except OSError as exc:
            raise self._failed(what, exc) from exc
        self.nr_writes.fetch_add(1)

    def ftruncate(self, size: int) -> None:
        what = f"truncate to {size} bytes"
        self._enter("truncate", what)
        try:
            os.ftruncate(self.fd, size)
        except OSError as exc:
            raise self._failed(what, exc) from exc

    def fsync(self) -> None:
        self._enter("sync", "fsync")
        try:
            os.fsync(self.fd)
        except OSError as exc:
            raise self._failed("fsync", exc) from exc


def open_host(path: str, want_write: bool, create: bool) -> tuple[int, bool]:
    """os.open for the kernel: (fd, writable).  Read and write when the host
    allows it, so one inode serves every later open of the file."""
    flags = os.O_RDWR | (os.O_CREAT if create else 0)
    try:
        return os.open(path, flags, 0o666), True
    except OSError as exc:
        if want_write or exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise host_open_error(path, exc) from exc
    try:
        return os.open(path, os.O_RDONLY), False
    except OSError as exc:
        raise host_open_error(path, exc) from exc


def host_open_error(path: str, exc: OSError) -> KernelError:
    code = exc.errno or errno.EIO
    return KernelError(f"{path}: cannot open: {exc.strerror or exc}", errno=code)


def regular_file_stat(path: str, fd: int) -> os.stat_result:
    """fstat of a host file we can cache; EISDIR or EINVAL for anything else."""
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode):
        return st
    os.close(fd)
    if stat.S_ISDIR(st.st_mode):
        raise KernelError(f"{path}: is a directory", errno=errno.EISDIR)
    raise InvalidArgument(f"{path}: is not a regular file; only regular files can be cached")


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
        with self.host_lock:
            old_size = self.size_word.load()
            self.size_word.store(size)
            try:
                self.io.ftruncate(size)
            except BaseException:
                self.size_word.store(old_size)
                raise

    def sync_backing(self) -> None:
        self.io.fsync()


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
        name = os.fspath(path)
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

    def check_quiescent(self) -> list[str]:
        """What is wrong with the inodes when no task runs; [] if all is well."""
        problems: list[str] = []
        for inode in self.inodes.values():
            if inode.lock.count != 1:
                problems.append(f"{inode.name}: the inode lock is still held")
            if inode.host_lock.held:
                problems.append(f"{inode.name}: the host lock is still held")
        return problems


__all__ = ["FAULT_KINDS", "HostFS", "HostFaults", "HostFile", "HostIO", "HostInode"]
