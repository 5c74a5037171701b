"""The reverse map: from a page map's pages to the PTEs that map them.

A page map keeps the list of memory regions (VMRs) that map its object; this
file says what the page map needs of those regions and of the address spaces
they belong to, and walks the list.  It is the page map's: only the page map
calls `mapped_spans`, over its own `vmrs`.

Rules: the caller of `mapped_spans` holds the page map's lock, which is what
keeps a region on the list (munmap must take that lock to take a region off),
so every span it returns stays valid until the caller lets go.  The walk
itself touches no PTE and has no scheduling point.

Lock order, outermost first: an address space's vmr_lock, the page map's
lock, the address space's pte_lock.  So what an address space does under its
pte_lock (`collect_dirty`) may be called with the map lock held, and what
takes its vmr_lock (`drop_private_copies`) may not.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple, Protocol

from pagemap.hw.memory import PGSHIFT, PGSIZE
from pagemap.sync.atomic import AtomicWord
from pagemap.sync.locks import SpinLock


class AddressSpace(Protocol):
    """What the page map needs of a process that maps its pages."""

    pid: int
    pte_lock: SpinLock

    def ptes(self, va_lo: int, va_hi: int) -> Iterable[AtomicWord]:
        """The PTE words that exist for pages in [va_lo, va_hi); pte_lock held."""
        ...

    def tlb_shootdown(self) -> None:
        """Remove this address space's entries from every core's TLB."""

    def collect_dirty(self, va_lo: int, va_hi: int) -> None:
        """Move the D bits of the PTEs in [va_lo, va_hi) to PG_DIRTY on their
        pages, so that a writeback sees stores made through the mapping.
        Takes pte_lock: callable with the map lock held."""

    def drop_private_copies(self, va_lo: int, va_hi: int) -> None:
        """Unmap and free this address space's private copies in
        [va_lo, va_hi).  Takes vmr_lock: never call it with the map lock held."""


class VMRegion(Protocol):
    """What the page map needs of a memory region mapping its object."""

    base: int
    end: int
    foff: int
    prot: int
    flags: int

    @property
    def proc(self) -> AddressSpace: ...


def vmr_has_page_idx(vmr: VMRegion, pg_idx: int) -> bool:
    """Whether `vmr` maps page `pg_idx` of its object."""
    nr_pgs = (vmr.end - vmr.base) >> PGSHIFT
    start_pg = vmr.foff >> PGSHIFT
    return start_pg <= pg_idx < start_pg + nr_pgs


def vmr_idx_to_va(vmr: VMRegion, pg_idx: int) -> int:
    va = vmr.base + ((pg_idx << PGSHIFT) - vmr.foff)
    assert vmr.base <= va < vmr.end, "page index outside the VMR"
    return va


def vmr_get_end_idx(vmr: VMRegion) -> int:
    return ((vmr.end - vmr.base) + vmr.foff) >> PGSHIFT


def vmr_overlap(vmr: VMRegion, lo: int, hi: int) -> tuple[int, int] | None:
    """The page indices [a, b) that `vmr` maps within [lo, hi), or None.

    The seed only considered VMRs that map page `lo` itself, so a VMR over the
    middle of the range kept its PTEs to pages that were then freed; removal
    here handles every VMR that overlaps the range at all.
    """
    a = max(lo, vmr.foff >> PGSHIFT)
    b = min(hi, vmr_get_end_idx(vmr))
    return (a, b) if a < b else None


class Span(NamedTuple):
    """The part [lo, hi) of region `vmr` that maps pages of a range."""

    vmr: VMRegion
    lo: int
    hi: int

    @property
    def proc(self) -> AddressSpace:
        return self.vmr.proc


def mapped_spans(
    vmrs: Iterable[VMRegion], lo: int, hi: int, with_flags: int = 0, without_flags: int = 0
) -> list[Span]:
    """Every region of `vmrs` that maps pages [lo, hi), has all of `with_flags`
    and none of `without_flags`, with the addresses that map those pages.

    The one walk of the reverse map: removal unmaps through it (passing over
    MAP_LOCKED regions), fsync collects D bits through it (MAP_SHARED
    regions only), truncate drops private copies through it (the others).
    The map lock is held.
    """
    spans: list[Span] = []
    for v in vmrs:
        if v.flags & with_flags != with_flags or v.flags & without_flags:
            continue
        overlap = vmr_overlap(v, lo, hi)
        if overlap is not None:
            a, b = overlap
            spans.append(Span(v, vmr_idx_to_va(v, a), vmr_idx_to_va(v, b - 1) + PGSIZE))
    return spans


__all__ = [
    "AddressSpace",
    "Span",
    "VMRegion",
    "mapped_spans",
    "vmr_get_end_idx",
    "vmr_has_page_idx",
    "vmr_idx_to_va",
    "vmr_overlap",
]
