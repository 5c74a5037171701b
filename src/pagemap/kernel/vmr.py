"""struct vm_region (a VMR), and a process's sorted list of them.

Rules.  A VMR never changes once made: splitting, merging or changing the
protection of a region builds new VMRs, registers them with their file's page
map, and only then unregisters the old ones, so a remover walking the map's
list (under its lock) always sees every PTE that might map one of its pages;
for a moment it may see some twice, which is harmless.

A process's list is sorted by base, its VMRs never overlap, and it changes
only under the process's vmr_lock, which the caller of every function here
holds.  register and unregister take the page map's lock, which comes after
vmr_lock.
"""

from __future__ import annotations

from typing import Protocol

from pagemap.hw.memory import PGSHIFT
from pagemap.kernel.mman import MAP_SHARED, PROT_ALL, PROT_EXEC, PROT_READ, PROT_WRITE
from pagemap.kernel.pagemap import PageMap
from pagemap.kernel.rmap import AddressSpace


class MappedFile(Protocol):
    """An open file as mmap needs it (kernel/vfs.py's File is one)."""

    @property
    def mapping(self) -> PageMap: ...

    @property
    def size(self) -> int: ...

    @property
    def readable(self) -> bool: ...

    @property
    def writable(self) -> bool: ...

    def sync_backing(self) -> None:
        """Make what writeback wrote durable (msync's MS_SYNC), and report a
        writeback error recorded since the file last reported one."""

    def advance_wb_err(self) -> None:
        """Count the writeback errors recorded so far as reported to the file."""


def prot_allows(prot: int, write: bool) -> bool:
    """Whether `prot` lets a load (or store) through.  As on x86, anything
    but PROT_NONE can be read."""
    return bool(prot & PROT_WRITE) if write else bool(prot & PROT_ALL)


def describe_prot(prot: int) -> str:
    if not prot & PROT_ALL:
        return "PROT_NONE"
    names = ((PROT_READ, "READ"), (PROT_WRITE, "WRITE"), (PROT_EXEC, "EXEC"))
    return "PROT_" + "|".join(n for bit, n in names if prot & bit)


class VMR:
    """struct vm_region: [base, end) of `proc`, mapping `file` from `foff`
    (or anonymous memory).  Immutable once made; see the module docstring."""

    __slots__ = ("base", "end", "file", "flags", "foff", "proc", "prot")

    def __init__(
        self,
        proc: AddressSpace,
        base: int,
        end: int,
        prot: int,
        flags: int,
        file: MappedFile | None,
        foff: int,
    ) -> None:
        self.proc = proc
        self.base = base
        self.end = end
        self.prot = prot
        self.flags = flags
        self.file = file
        self.foff = foff

    @property
    def mapping(self) -> PageMap | None:
        return self.file.mapping if self.file is not None else None

    @property
    def shared(self) -> bool:
        return bool(self.flags & MAP_SHARED)

    def index_of(self, va: int) -> int:
        """The file page that `va` maps."""
        return (self.foff + (va - self.base)) >> PGSHIFT

    def slice(self, lo: int, hi: int, prot: int | None = None) -> VMR:
        """A new VMR for [lo, hi) of this one, optionally with another prot."""
        return VMR(
            self.proc,
            lo,
            hi,
            self.prot if prot is None else prot,
            self.flags,
            self.file,
            self.foff + (lo - self.base),
        )

    def mergeable(self, nxt: VMR) -> bool:
        """Whether `nxt`, which starts where this ends, can join it."""
        return (
            self.end == nxt.base
            and self.prot == nxt.prot
            and self.flags == nxt.flags
            and self.file is nxt.file
            and (self.file is None or self.foff + (self.end - self.base) == nxt.foff)
        )

    def __repr__(self) -> str:
        what = "anon" if self.file is None else f"{self.mapping!r}+{self.foff:#x}"
        return (
            f"VMR(p{self.proc.pid} {self.base:#x}-{self.end:#x} {describe_prot(self.prot)} "
            f"flags={self.flags:#x} {what})"
        )


# -- the list --------------------------------------------------------------------


def vmr_base(v: VMR) -> int:
    """The sort key of a process's list."""
    return v.base


def find_vmr(vmrs: list[VMR], va: int) -> VMR | None:
    """The VMR holding `va`, or None."""
    for v in vmrs:
        if v.base <= va < v.end:
            return v
        if v.base > va:
            return None
    return None


def insert_vmr(vmrs: list[VMR], vmr: VMR) -> None:
    vmrs.append(vmr)
    vmrs.sort(key=vmr_base)


def overlapping(vmrs: list[VMR], lo: int, hi: int) -> list[VMR]:
    """The VMRs that overlap [lo, hi), in order."""
    return [v for v in vmrs if v.base < hi and v.end > lo]


def is_free(vmrs: list[VMR], lo: int, hi: int) -> bool:
    """Whether no VMR overlaps [lo, hi)."""
    return all(v.end <= lo or v.base >= hi for v in vmrs)


def split_outside(v: VMR, lo: int, hi: int) -> list[VMR]:
    """The new VMRs for the parts of `v` below `lo` and above `hi` (a split)."""
    parts = []
    if v.base < lo:
        parts.append(v.slice(v.base, lo))
    if v.end > hi:
        parts.append(v.slice(hi, v.end))
    return parts


def among(v: VMR, group: list[VMR]) -> bool:
    """Whether `v` itself (not an equal VMR) is in `group`."""
    return any(v is g for g in group)


def register(vmr: VMR) -> None:
    """Put a new VMR on its file's page map (pm_add_vmr), if it maps a file."""
    mapping = vmr.mapping
    if mapping is not None:
        mapping.add_vmr(vmr)


def unregister(vmr: VMR) -> None:
    """Take a VMR off its file's page map (pm_remove_vmr), if it maps a file."""
    mapping = vmr.mapping
    if mapping is not None:
        mapping.remove_vmr(vmr)


def merge_around(vmrs: list[VMR], lo: int, hi: int) -> None:
    """Join compatible neighbours touching [lo, hi), in place: each joined
    VMR is registered before the two it replaces are unregistered."""
    i = 0
    while i + 1 < len(vmrs):
        a, b = vmrs[i], vmrs[i + 1]
        if a.end >= lo and b.base <= hi and a.mergeable(b):
            joined = a.slice(a.base, b.end)
            register(joined)
            vmrs[i : i + 2] = [joined]
            unregister(a)
            unregister(b)
            continue
        i += 1


__all__ = [
    "VMR",
    "MappedFile",
    "among",
    "describe_prot",
    "find_vmr",
    "insert_vmr",
    "is_free",
    "merge_around",
    "overlapping",
    "prot_allows",
    "register",
    "split_outside",
    "unregister",
]
