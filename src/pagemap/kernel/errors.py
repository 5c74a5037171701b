"""Kernel errors: every one is an OSError carrying an errno and a sentence."""

from __future__ import annotations

import errno as _errno


class KernelError(OSError):
    """An error the kernel returns to its caller, with `.errno` set."""

    default_errno = _errno.EINVAL

    def __init__(self, message: str, errno: int | None = None) -> None:
        code = self.default_errno if errno is None else errno
        super().__init__(code, message)

    def __str__(self) -> str:
        code = self.errno or 0
        return f"{_errno.errorcode.get(code, code)}: {self.strerror}"


class OutOfMemory(KernelError):
    """No free frame (ENOMEM)."""

    default_errno = _errno.ENOMEM


class IOFailure(KernelError):
    """A backing store failed to read or write (EIO)."""

    default_errno = _errno.EIO


class AlreadyExists(KernelError):
    """An index is already occupied (EEXIST)."""

    default_errno = _errno.EEXIST


class InvalidArgument(KernelError):
    """A bad argument (EINVAL)."""

    default_errno = _errno.EINVAL


class RefcountOverflow(KernelError):
    """A counter would wrap past its width (EOVERFLOW)."""

    default_errno = _errno.EOVERFLOW


class KernelBug(KernelError):
    """The kernel broke one of its own rules (a double free, a put without a get).

    The seed asserts in these places; we raise, so a test or the checker can
    report which rule broke and where.
    """

    default_errno = _errno.EFAULT


# -- what an access or a mapping call answers, as Linux signals it ----------------


class SegmentationFault(KernelError):
    """An access Linux answers with SIGSEGV: nothing mapped there (EFAULT),
    or a mapping that forbids it (EPERM)."""

    default_errno = _errno.EFAULT
    signal = "SIGSEGV"


class BusError(KernelError):
    """An access Linux answers with SIGBUS: a file page at or past the end of
    the file."""

    default_errno = _errno.EFAULT
    signal = "SIGBUS"


class AccessDenied(KernelError):
    """The file's open mode does not allow the mapping asked for (EACCES)."""

    default_errno = _errno.EACCES


class NotMapped(KernelError):
    """Part of an address range has no mapping, or no room is left (ENOMEM)."""

    default_errno = _errno.ENOMEM
