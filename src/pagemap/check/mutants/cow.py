"""Mutants of fork, copy-on-write and the kernel's access to user memory
(kernel/fork.py, kernel/cow.py, kernel/gup.py), and truncate's walk
of the private mappings fork adds to, each caught by a scenario of
check/scenarios/cow.py."""

from __future__ import annotations

import pagemap.kernel.fork as fork_module
from pagemap.check.mutants.base import Mutant
from pagemap.hw.memory import PGSHIFT
from pagemap.hw.mmu import PTE_P, PTE_U, PTE_W, make_pte, pte_ppn
from pagemap.kernel.errors import NotMapped
from pagemap.kernel.fork import Fork
from pagemap.kernel.gup import Pin
from pagemap.kernel.mapcount import share
from pagemap.kernel.mman import MAP_LOCKED, MAP_SHARED
from pagemap.kernel.page import Page
from pagemap.kernel.pagemap import PageMap
from pagemap.kernel.proc import Proc
from pagemap.kernel.radix import ALL_PAGES
from pagemap.kernel.rmap import mapped_spans
from pagemap.kernel.vmr import VMR, find_vmr, register, split_outside, unregister, vmr_base
from pagemap.sync.core import WRITE


def _share_writable(self: Fork, child: Fork) -> None:
    """fork shares the pages but leaves the parent's PTEs writable."""
    for vpn in sorted(self.anon):
        page = self.anon[vpn]
        word = self.page_table.lookup(vpn)
        old = word.load() if word is not None else 0
        self.allocator.incref(page)
        share(page)
        child.anon[vpn] = page
        child._owner_changed(page)
        if old & PTE_P:
            child.page_table.pte(vpn).store(make_pte(page.ppn, PTE_P | PTE_U))


def _not_registered(vmr: VMR) -> None:
    """fork's copy of a region never joins its file's page map."""


def _follow_any(self: Proc, va: int, write: bool, foll_cow: bool) -> Page | None:
    """FOLL_COW takes any read-only PTE for a write, not only our own copy."""
    word = self.page_table.lookup(va >> PGSHIFT)
    pte = word.load() if word is not None else 0
    if not pte & PTE_P or (write and not pte & PTE_W and not foll_cow):
        return None
    return self.allocator.pages[pte_ppn(pte)]


def _never_shared(self: Proc, vmr: VMR, page: Page) -> bool:
    """The reuse rule ignores the map count: every page is ours alone."""
    return False


def _reuse(self: Proc, vmr: VMR, va: int, page: Page) -> bool:
    return False


def _locked_unregisters_first(
    self: Proc, op: str, lo: int, hi: int, locked: int
) -> list[tuple[VMR, int, int]]:
    """mlock takes the old region off its page map before the new ones join it."""
    changed: list[tuple[VMR, int, int]] = []
    pos = lo
    while pos < hi:
        vmr = find_vmr(self.vmrs, pos)
        if vmr is None:
            raise NotMapped(f"{op}: nothing is mapped at {pos:#x}")
        end = min(hi, vmr.end)
        if vmr.flags & MAP_LOCKED != locked:
            flags = vmr.flags & ~MAP_LOCKED | locked
            piece = VMR(self, pos, end, vmr.prot, flags, vmr.file, vmr.foff + (pos - vmr.base))
            pieces = [*split_outside(vmr, pos, end), piece]
            unregister(vmr)
            for p in pieces:
                register(p)
            self.vmrs = sorted([v for v in self.vmrs if v is not vmr] + pieces, key=vmr_base)
            if locked:
                changed.append((piece, pos, end))
        pos = end
    return changed


def _write_clean(self: Pin, offset: int, data: bytes) -> None:
    """A write through a pin leaves a file page clean."""
    self.executor.point("kmap.store", self.page.ppn, WRITE)
    self.page.data[offset : offset + len(data)] = data


def _truncate_walks_once(self: PageMap, index: int) -> None:
    """truncate walks the private mappings once: a child's region fork
    registers after the walk keeps the copies fork gave it."""
    with self.lock:
        spans = mapped_spans(self.vmrs, index, ALL_PAGES, without_flags=MAP_SHARED)
    for span in spans:
        span.proc.drop_private_copies(span.lo, span.hi)


COW_MUTANTS = (
    Mutant(
        "fork-no-wrprotect",
        "fork shares a private page with the child but leaves the parent's PTE writable",
        "fork-store",
        {"_share_anon": _share_writable},
        budget=10,
        target=Proc,
    ),
    Mutant(
        "fork-unregistered",
        "fork's copy of a file region never joins the page map: removal misses the child",
        "fork-remove",
        {"register": _not_registered},
        budget=20,
        target=fork_module,
    ),
    Mutant(
        "follow-any-read-only",
        "a forced write's retry takes whatever read-only page is mapped, not only its copy",
        "gup-dontneed",
        {"_follow": _follow_any},
        budget=500,
        target=Proc,
    ),
    Mutant(
        "reuse-shared",
        "a write fault reuses a page another process still maps (no map count)",
        "pin-parent-write",
        {"_write_shared": _reuse, "_cow_read_only": _never_shared},
        budget=20,
        target=Proc,
    ),
    Mutant(
        "pin-write-clean",
        "the kernel's write through a pin of a file page leaves the page clean",
        "gup-remove",
        {"write": _write_clean},
        budget=50,
        target=Pin,
    ),
    Mutant(
        "mlock-unregisters-first",
        "mlock takes the old region off its page map before its locked pieces join it",
        "mlock-remove",
        {"_set_locked": _locked_unregisters_first},
        budget=100,
        target=Proc,
    ),
    Mutant(
        "truncate-walks-once",
        "truncate walks the private mappings once, missing a child fork registers after it",
        "fork-truncate",
        {"drop_private_copies": _truncate_walks_once},
        budget=100,
        target=PageMap,
    ),
)
