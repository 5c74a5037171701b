"""Host I/O: the host files under the kernel's backing stores.

A host file is to the kernel what a disk is to a real one: the VFS's host
files (kernel/hostfs.py) read and write their pages through one, and so does
a block device (kernel/blockdev.py) its disk image.  Every host call goes
through HostIO, which makes it a scheduling point ("host_read", "host_write",
"host_truncate", "host_sync"), lets tests make the next few calls fail
(HostFaults), and turns any host error into EIO.

Rules: a HostIO takes no kernel lock, so it may be called with any held
(writepage calls it under the page lock and the host file's host_lock).  A
failed call raises IOFailure (EIO) and is not retried; what stays undone is
the caller's to keep (a failed writepage leaves its page dirty).  The
descriptor is closed by close(), or when the HostIO is collected.
"""

from __future__ import annotations

import errno
import os
import resource
import stat
import weakref

from pagemap.kernel.errors import AlreadyClosed, InvalidArgument, IOFailure, KernelError
from pagemap.kernel.owner import as_int
from pagemap.sync.atomic import AtomicWord
from pagemap.sync.core import READ, WRITE
from pagemap.sync.executor import Executor

FAULT_KINDS = ("read", "write", "truncate", "sync")


class HostFaults:
    """Makes the next N host calls of a kind fail with EIO, as a failing disk
    would: `faults.fail("write", 2)`.  Kinds: read, write, truncate, sync."""

    def __init__(self, executor: Executor, name: str) -> None:
        self._pending: dict[str, AtomicWord] = {
            kind: executor.atomic(0, f"{name}.faults.{kind}") for kind in FAULT_KINDS
        }

    def fail(self, kind: str, count: int = 1) -> None:
        """Make the next `count` host calls of `kind` fail.  Not a system call
        but a test's setting: a bad kind or count is a ValueError."""
        word = self._word(kind, "fail")
        count = as_int(count, "faults.fail", "the count")
        if count < 0:
            raise ValueError(f"faults.fail: cannot fail {count} host calls: the count is negative")
        word.fetch_add(count)

    def pending(self, kind: str) -> int:
        """How many host calls of `kind` are still to fail."""
        return self._word(kind, "pending").load()

    def _word(self, kind: object, op: str) -> AtomicWord:
        if not isinstance(kind, str):
            raise TypeError(f"faults.{op}: the kind must be a str, not {type(kind).__name__}")
        word = self._pending.get(kind)
        if word is None:
            raise ValueError(
                f"faults.{op}: no host call of kind {kind!r}; the kinds are "
                f"{', '.join(FAULT_KINDS)}"
            )
        return word

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
        executor.register(self)  # a footprint object (sync/core.py)

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
            raise AlreadyClosed(f"{self.name}: {what} after its machine was closed")

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

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None:
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

    # The largest size the host lets this file have.  Accepting a write the
    # host will refuse would leave its page dirty, and every later fsync
    # failing, forever; so the VFS refuses it (EFBIG) at the write.

    @staticmethod
    def fsize_rlimit(most: int) -> int:
        """`most`, or this process's RLIMIT_FSIZE if that is less."""
        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        if soft != resource.RLIM_INFINITY and 0 <= soft < most:
            return soft
        return most

    def fs_size_limit(self, most: int) -> int:
        """`most`, or the file's filesystem's limit if that is less (ext4's is
        16 TiB less a page, with 4 KiB blocks).  Found by seeking, which Linux
        refuses (EINVAL) past that limit and which changes nothing else: we
        read and write with pread and pwrite, never at the position."""
        try:
            os.lseek(self.fd, most, os.SEEK_SET)
            return most
        except (OSError, OverflowError):
            pass
        lo, hi = 0, most  # the host accepts lo, refuses hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            try:
                os.lseek(self.fd, mid, os.SEEK_SET)
                lo = mid
            except OSError:
                hi = mid
        return lo


def host_path(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    """A host path as a str; TypeError for what is not a path."""
    try:
        return os.fsdecode(path)
    except TypeError:
        raise TypeError(
            f"open: the path must be a str, bytes or os.PathLike, not {type(path).__name__}"
        ) from None


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


__all__ = [
    "FAULT_KINDS",
    "HostFaults",
    "HostIO",
    "host_open_error",
    "host_path",
    "open_host",
    "regular_file_stat",
]
