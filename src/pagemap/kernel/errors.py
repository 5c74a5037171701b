"""Kernel errors: every one is an OSError carrying an errno and a sentence.

A KernelError is built as an OSError is, `KernelError(errno.EIO, "disk gone")`,
or with the sentence alone, `IOFailure("disk gone")`, when the class's own
errno fits (`errno=` overrides it).  Anything else is refused with TypeError:
an errno that is not an int would reach the caller as a string, silently.

What is not a KernelError: a wrong type is a TypeError, and a value that no
system call could be handed (an unknown executor, fault kind or size string)
a ValueError; both are the caller's programming errors (docs/errors.md).
"""

from __future__ import annotations

import errno as _errno
from typing import overload


class KernelError(OSError):
    """An error the kernel returns to its caller, with `.errno` set."""

    default_errno = _errno.EINVAL

    @overload
    def __init__(self, message: str, /, *, errno: int | None = None) -> None: ...

    @overload
    def __init__(self, errno: int, message: str, /) -> None: ...

    def __init__(self, *args: object, errno: int | None = None) -> None:
        code, message = _errno_and_message(type(self).__name__, args, errno, self.default_errno)
        super().__init__(code, message)

    def __str__(self) -> str:
        code = self.errno or 0
        return f"{_errno.errorcode.get(code, code)}: {self.strerror}"


def _errno_and_message(
    cls: str, args: tuple[object, ...], errno: int | None, default: int
) -> tuple[int, str]:
    """(errno, message) from OSError's order or from the sentence alone."""
    if len(args) == 2 and errno is None:
        code, message = args
    elif len(args) == 1:
        code, message = (default if errno is None else errno), args[0]
    else:
        raise TypeError(
            f"{cls} takes (errno, message) as OSError does, or (message, errno=...), "
            f"not {len(args)} positional argument(s)"
            + (" with errno=" if errno is not None else "")
        )
    if not isinstance(code, int) or isinstance(code, bool) or code <= 0:
        raise TypeError(f"{cls}: the errno must be a positive int (errno.EIO, ...), not {code!r}")
    if not isinstance(message, str):
        raise TypeError(f"{cls}: the message must be a str, not {type(message).__name__}")
    return code, message


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


# -- what the Python API answers for objects it cannot use ---------------------------


class WrongMachine(InvalidArgument):
    """An object made by another Machine: its frames, page tables and files are
    not this machine's, so nothing of it can be used here (EINVAL)."""


class AlreadyClosed(KernelError):
    """A File closed, or any object of a Machine that was closed (EBADF)."""

    default_errno = _errno.EBADF


class NoSuchProcess(KernelError):
    """A process that has exited, by its own exit() or its machine's close (ESRCH)."""

    default_errno = _errno.ESRCH


class FileTooLarge(KernelError):
    """A write or truncate at or past the largest size the backing store
    allows (EFBIG)."""

    default_errno = _errno.EFBIG
