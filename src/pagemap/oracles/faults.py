"""Faults reported: every injected host fault reaches a caller with its errno,
or is still pending on a dirty page.

A failing disk must not fail silently.  When a host call takes an injected
fault (kernel/hostio.py HostFaults, `on_take`) the oracle notes its kind, the
errno it carries (EIO, or ENOSPC for a full disk, a short write or one that
made no progress) and, for a write, the file offset.  Tasks that catch an
error say so (`caught`).  When the tasks are done, before anything writes the
cache back, each fault must be matched by an error of its errno that some
task caught, or, for a write, by its page still dirty in the cache: the error
is still to come, at the next writeback that reaches the disk.  A fault that
is neither was swallowed somewhere between the host and the caller.

Rules: fed from the tasks' own steps and read only at the end; plain Python,
since its verdict is taken once every task has finished.
"""

from __future__ import annotations

import errno
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from pagemap.oracles import DURABILITY, Violation

_ERRNO = {"eio": errno.EIO, "enospc": errno.ENOSPC, "short": errno.ENOSPC, "zero": errno.ENOSPC}


@dataclass(frozen=True)
class Taken:
    kind: str  # read, write, truncate, sync
    errno: int
    offset: int  # the file offset of a read or write; -1 for the others

    def __str__(self) -> str:
        at = f" at offset {self.offset}" if self.offset >= 0 else ""
        return f"an injected host {self.kind} fault ({errno.errorcode[self.errno]}){at}"


@dataclass
class FaultsReported:
    """Matches the faults taken with the errors caught (see the module docstring)."""

    taken: list[Taken] = field(default_factory=list)
    caught: Counter[int] = field(default_factory=Counter)

    def took(self, kind: str, effect: str, offset: int) -> None:
        """A host call took an injected fault (HostFaults.on_take)."""
        self.taken.append(Taken(kind, _ERRNO[effect], offset))

    def reported(self, exc: BaseException) -> None:
        """A task caught `exc`: the error reached a caller."""
        code = getattr(exc, "errno", None)
        if isinstance(code, int):
            self.caught[code] += 1

    def verdict(self, dirty: Callable[[int], bool]) -> list[Violation]:
        """The faults reported to no caller and pending on no dirty page;
        `dirty(offset)`: the page holding that file offset is cached and dirty."""
        left = Counter(self.caught)
        out: list[Violation] = []
        for fault in self.taken:
            if left[fault.errno]:
                left[fault.errno] -= 1
            elif fault.kind == "write" and fault.offset >= 0 and dirty(fault.offset):
                continue
            else:
                out.append(
                    Violation(
                        DURABILITY,
                        f"{fault} reached no caller: no task saw "
                        f"{errno.errorcode[fault.errno]}, and no dirty page still holds what "
                        "failed to be written",
                    )
                )
        return out


__all__ = ["FaultsReported", "Taken"]
