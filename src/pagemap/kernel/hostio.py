"""Host I/O: the host files under the kernel's backing stores.

A host file is to the kernel what a disk is to a real one: the VFS's host
files (kernel/hostfs.py) read and write their pages through one, and so does
a block device (kernel/blockdev.py) its disk image.  Every host call goes
through HostIO, which makes it a scheduling point ("host_read", "host_write",
"host_truncate", "host_sync"), lets tests make the next few calls fail
(HostFaults), and turns any host error into a KernelError that keeps the
host's errno (a full host disk is ENOSPC to the caller, as Linux reports
it, not EIO).

Rules: a HostIO takes no kernel lock, so it may be called with any held
(writepage calls it under the page lock and the host file's host_lock).  A
failed call raises a KernelError and is not retried; what stays undone is
the caller's to keep (a failed writepage leaves its page dirty).  A host
write that makes no progress (os.pwrite returning 0) is ENOSPC, never a
loop.  The descriptor is closed by close(), or when the HostIO is collected.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import os
import resource
import stat
import weakref
from collections.abc import Callable

from pagemap.kernel.errors import AlreadyClosed, InvalidArgument, IOFailure, KernelError
from pagemap.kernel.owner import as_int
from pagemap.sync.atomic import AtomicWord
from pagemap.sync.core import READ, WRITE
from pagemap.sync.executor import Executor

FAULT_KINDS = ("read", "write", "truncate", "sync")
# What an injected fault looks like to the host call: an error with this
# errno, a write the host cuts short, or a write that makes no progress.
FAULT_EFFECTS = ("eio", "enospc", "short", "zero")


class HostFaults:
    """Makes the next N host calls of a kind fail with EIO, as a failing disk
    would: `faults.fail("write", 2)`.  Kinds: read, write, truncate, sync.

    `faults.fail("write", 1, "enospc")` fails with ENOSPC instead (a full
    host disk); "short" makes the host write take only part of the bytes
    before it fails with ENOSPC, and "zero" makes os.pwrite return 0 (no
    progress): the two ways a real write stops short."""

    def __init__(self, executor: Executor, name: str) -> None:
        self._pending: dict[str, AtomicWord] = {
            kind: executor.atomic(0, f"{name}.faults.{kind}") for kind in FAULT_KINDS
        }
        # The effect of the faults of each kind, as set by the last fail();
        # read only by the host call that takes a fault.
        self._effect: dict[str, str] = dict.fromkeys(FAULT_KINDS, "eio")
        # Told (kind, effect, file offset or -1) as a host call takes a fault:
        # the checker's oracle that every fault reaches a caller (oracles/faults.py).
        self.on_take: Callable[[str, str, int], None] | None = None

    def fail(self, kind: str, count: int = 1, effect: str = "eio") -> None:
        """Make the next `count` host calls of `kind` fail (with `effect`, one
        of FAULT_EFFECTS; "short" and "zero" only for writes).  Not a system
        call but a test's setting: a bad kind, count or effect is a ValueError."""
        word = self._word(kind, "fail")
        count = as_int(count, "faults.fail", "the count")
        if count < 0:
            raise ValueError(f"faults.fail: cannot fail {count} host calls: the count is negative")
        if effect not in FAULT_EFFECTS or (effect in ("short", "zero") and kind != "write"):
            raise ValueError(
                f"faults.fail: no effect {effect!r} for {kind} calls; the effects are "
                f"eio and enospc, and short and zero for writes"
            )
        self._effect[kind] = effect
        word.fetch_add(count)

    def effect(self, kind: str) -> str:
        """How a fault of `kind` shows itself (see fail)."""
        return self._effect[kind]

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

    def _enter(self, kind: str, what: str, offset: int = -1) -> str:
        """The scheduling point of a host call; the effect of an injected
        fault if this call takes one ("" if not).  Errors are raised here;
        "short" and "zero" are the write's to act out."""
        self.executor.point(f"host_{kind}", self, READ if kind == "read" else WRITE)
        faults = self.faults
        effect = faults.effect(kind) if faults.take(kind) else ""
        if effect and faults.on_take is not None:
            faults.on_take(kind, effect, offset)
        if effect == "eio":
            raise IOFailure(f"{self.name}: {what} failed (injected host I/O error)")
        if effect == "enospc":
            raise KernelError(
                f"{self.name}: {what} failed (injected: no space left on the host's device)",
                errno=errno.ENOSPC,
            )
        if self.closed:
            raise AlreadyClosed(f"{self.name}: {what} after its machine was closed")
        return effect

    def _failed(self, what: str, exc: OSError) -> KernelError:
        """A host error as the kernel reports it: the host's own errno (ENOSPC
        stays ENOSPC, EDQUOT stays EDQUOT), EIO only when it has none."""
        code = exc.errno if isinstance(exc.errno, int) and exc.errno > 0 else errno.EIO
        return KernelError(
            f"{self.name}: {what} failed on the host: {exc.strerror or exc}", errno=code
        )

    def pread(self, nbytes: int, offset: int) -> bytes:
        """Up to `nbytes` from `offset`; fewer only at the host file's end."""
        what = f"read of {nbytes} bytes at {offset}"
        self._enter("read", what, offset)
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
        effect = self._enter("write", what, offset)
        done = 0
        try:
            while done < len(src):
                if effect == "short":
                    # The host takes half, then the next call finds no room.
                    done += os.pwrite(self.fd, src[: max(1, len(src) // 2)], offset)
                    effect = "enospc"
                    continue
                wrote = 0 if effect else os.pwrite(self.fd, src[done:], offset + done)
                if not wrote:
                    # No progress: asking again would loop forever.  Linux's
                    # write(2) returns 0 only when the device has no room for
                    # another byte, which it reports as ENOSPC.
                    raise KernelError(
                        f"{self.name}: {what} failed on the host: the write made no progress "
                        f"after {done} bytes (no space left on the host's device)",
                        errno=errno.ENOSPC,
                    )
                done += wrote
        except KernelError:
            raise
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

    def fallocate(self, mode: int, offset: int, length: int) -> None:
        """The host's fallocate(2): os.posix_fallocate for mode 0, libc's
        fallocate through ctypes for the others (KEEP_SIZE, PUNCH_HOLE).  A
        point of its own; its injected faults are the "truncate" kind's."""
        what = f"fallocate mode {mode:#x} of {length} bytes at {offset}"
        self._enter("truncate", what)
        try:
            if mode:
                host_fallocate(self.fd, mode, offset, length)
            else:
                os.posix_fallocate(self.fd, offset, length)
        except OSError as exc:
            raise self._failed(what, exc) from exc

    def fsync(self) -> None:
        self._enter("sync", "fsync")
        try:
            os.fsync(self.fd)
        except OSError as exc:
            raise self._failed("fsync", exc) from exc

    def lock_exclusive(self, what: str) -> None:
        """Take the host file's advisory lock (flock) for `what`, as Linux
        opens a block device exclusively to mount it read-write: another
        holder (a second Machine, or another process, with its own
        descriptor) makes this EBUSY rather than let two writers of one image
        corrupt it.  A host filesystem that has no such locks (ENOLCK,
        EOPNOTSUPP) is let through: nothing could be enforced there anyway.
        Not a scheduling point: mounting is never raced by the checker."""
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise KernelError(
                f"{self.name}: {what}: the image is already mounted read-write by another "
                "machine or process",
                errno=errno.EBUSY,
            ) from None
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise self._failed(f"{what}: locking the image", exc) from exc

    def unlock(self) -> None:
        """Give back the lock of lock_exclusive (a closed descriptor has none)."""
        if not self.closed:
            with contextlib.suppress(OSError):
                fcntl.flock(self.fd, fcntl.LOCK_UN)

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


@functools.cache
def _libc_fallocate() -> Callable[[int, int, int, int], int]:
    """libc's fallocate(int fd, int mode, off_t offset, off_t len), found once."""
    libc = ctypes.CDLL(None, use_errno=True)
    fn = libc.fallocate
    fn.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    fn.restype = ctypes.c_int
    return fn


def host_fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    """fallocate(2) on a host descriptor; OSError with the host's errno."""
    if _libc_fallocate()(fd, mode, offset, length):
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


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
    "host_fallocate",
    "host_open_error",
    "host_path",
    "open_host",
    "regular_file_stat",
]
