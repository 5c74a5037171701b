"""The errors an ext2 filesystem returns, each a KernelError with Linux's errno.

`Corrupt` (EUCLEAN, what Linux's ext2 reports as "structure needs cleaning")
is raised wherever an on-disk structure fails its checks; its message says
which structure, where, and what was wrong with it.
"""

from __future__ import annotations

import errno as _errno

from pagemap.kernel.errors import KernelError


class Corrupt(KernelError):
    """An on-disk structure is inconsistent (EUCLEAN)."""

    default_errno = _errno.EUCLEAN


class NoSpace(KernelError):
    """No free block or inode is left (ENOSPC)."""

    default_errno = _errno.ENOSPC


class NotFound(KernelError):
    default_errno = _errno.ENOENT


class Exists(KernelError):
    default_errno = _errno.EEXIST


class NotADirectory(KernelError):
    default_errno = _errno.ENOTDIR


class IsADirectory(KernelError):
    default_errno = _errno.EISDIR


class NotEmpty(KernelError):
    default_errno = _errno.ENOTEMPTY


class ReadOnly(KernelError):
    default_errno = _errno.EROFS


class NameTooLong(KernelError):
    default_errno = _errno.ENAMETOOLONG


class TooManyLinks(KernelError):
    default_errno = _errno.EMLINK


class Busy(KernelError):
    default_errno = _errno.EBUSY


class TooBig(KernelError):
    default_errno = _errno.EFBIG


class SymlinkLoop(KernelError):
    default_errno = _errno.ELOOP


class Unsupported(KernelError):
    """A feature this driver does not implement (EINVAL, as Linux refuses a mount)."""

    default_errno = _errno.EINVAL
