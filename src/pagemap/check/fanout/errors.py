"""What can go wrong in running units of work elsewhere: each an OSError with an errno."""

from __future__ import annotations

import errno as _errno


class FanoutError(OSError):
    """Units of work could not be run; `.errno` set, the message a sentence."""

    default_errno = _errno.EIO

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(self.default_errno if errno is None else errno, message)

    def __str__(self) -> str:
        code = self.errno or 0
        return f"{_errno.errorcode.get(code, code)}: {self.strerror}"


class UnitFailed(FanoutError):
    """A unit raised in its worker (not a violation: the checker itself failed)."""

    default_errno = _errno.EIO


class WorkerLost(FanoutError):
    """Workers kept dying while they ran a unit; it was given up."""

    default_errno = _errno.EPIPE


class ClusterUnavailable(FanoutError):
    """The Dask scheduler cannot be reached, or pagemap[cluster] is not installed."""

    default_errno = _errno.ECONNREFUSED


__all__ = ["ClusterUnavailable", "FanoutError", "UnitFailed", "WorkerLost"]
