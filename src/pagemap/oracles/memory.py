"""Memory safety: no task uses a frame it does not own.

Fed three kinds of event:

- `hold(task, page, map, index)` / `drop(task, page)`: a task took or is
  about to put a slot reference to a page; in between the page must stay
  allocated and stay that page of that map;
- `freed(page)`: the allocator is freeing a frame (Machine's allocator hook);
  a page some task holds must never be freed;
- `landed(...)`: a user load or store is about to land in a frame (the MMU's
  access hook): the frame must not be free, and must hold the page the
  region maps there (or the process's own private copy).

and asked once `remove_contig` returns: `no_stale_translation()`, no PTE or
TLB entry names a frame that is free.  Each violation is reported through
`fail(oracle, message)`: the checker's ends the schedule at once and never
returns; `pagemap run`'s records it and lets the run go on, so every check
here returns once it has reported.

`landed` needs to know what the region at an address maps.  `Mappings`
learns it as each mapping is made and unmade, from the caller of mmap and
munmap (at whatever address and of whatever size the kernel chose), never
from the kernel's VMR list, which is what is judged; `access`, the Machine's
access hook, asks it and calls `landed`.

Checking at these events, not at every step, costs nothing per step; it is as
strong, since a held page can only be freed or reused through `freed`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pagemap.hw.memory import PGMASK, PGSHIFT
from pagemap.kernel.mm import MM
from pagemap.kernel.page import Page
from pagemap.kernel.pagemap import PageMap
from pagemap.kernel.slot import decode_slot
from pagemap.oracles import MEMORY_SAFETY

if TYPE_CHECKING:
    from pagemap.machine import Machine

# fail(oracle, message): the checker's never returns; pagemap run's does.
Fail = Callable[[str, str], None]


@dataclass(frozen=True)
class Region:
    """[base, end) of a process, mapping `pm` from file offset `foff` (None:
    anonymous memory); `private`: MAP_PRIVATE, so a store there makes the
    process its own copy."""

    base: int
    end: int
    pm: PageMap | None
    foff: int
    private: bool

    def index_of(self, va: int) -> int:
        return (self.foff + va - self.base) >> PGSHIFT


class Mappings:
    """What each process has mapped where, as told by the callers of mmap and
    munmap.  A process's list changes only in the task that maps and unmaps
    for it, and is replaced whole, so its accesses read it without a lock."""

    def __init__(self) -> None:
        self._regions: dict[int, tuple[Region, ...]] = {}  # pid -> its regions

    def mapped(
        self, pid: int, base: int, length: int, pm: PageMap | None, foff: int, private: bool
    ) -> None:
        """mmap returned `base` for `length` bytes (rounded up to whole pages,
        as mmap maps them); like MAP_FIXED, it replaces what was there."""
        end = base + ((length + PGMASK) & ~PGMASK)
        kept = self._without(pid, base, end)
        self._regions[pid] = (*kept, Region(base, end, pm, foff, private))

    def unmapped(self, pid: int, addr: int, length: int) -> None:
        """munmap of [addr, addr + length) returned: what it covered is gone."""
        self._regions[pid] = self._without(pid, addr, addr + ((length + PGMASK) & ~PGMASK))

    def find(self, pid: int, va: int) -> Region | None:
        for region in self._regions.get(pid, ()):
            if region.base <= va < region.end:
                return region
        return None

    def _without(self, pid: int, lo: int, hi: int) -> tuple[Region, ...]:
        """pid's regions with [lo, hi) cut out of them."""
        kept: list[Region] = []
        for r in self._regions.get(pid, ()):
            if r.end <= lo or r.base >= hi:
                kept.append(r)
                continue
            if r.base < lo:
                kept.append(Region(r.base, lo, r.pm, r.foff, r.private))
            if r.end > hi:
                kept.append(Region(hi, r.end, r.pm, r.foff + hi - r.base, r.private))
        return tuple(kept)


class MemorySafety:
    def __init__(self, machine: Machine, fail: Fail, who: Callable[[], str]) -> None:
        self.machine = machine
        self.fail = fail
        self.who = who
        self.mappings = Mappings()
        # (task id, ppn) -> (page, map, index) for every page a task holds.
        self.held: dict[tuple[int, int], tuple[Page, PageMap, int]] = {}
        self._held_ppns: dict[int, int] = {}  # ppn -> how many holds

    # -- slot references -----------------------------------------------------------
    def hold(self, tid: int, page: Page, pm: PageMap, index: int) -> None:
        self.check_page(page, pm, index, "was handed")
        self.held[(tid, page.ppn)] = (page, pm, index)
        self._held_ppns[page.ppn] = self._held_ppns.get(page.ppn, 0) + 1

    def drop(self, tid: int, page: Page) -> None:
        got = self.held.pop((tid, page.ppn), None)
        if got is None:
            return
        self.check_page(page, got[1], got[2], "puts back")
        left = self._held_ppns[page.ppn] - 1
        if left:
            self._held_ppns[page.ppn] = left
        else:
            del self._held_ppns[page.ppn]

    def freed(self, page: Page) -> None:
        """The allocator is about to put `page`'s frame back on the free list."""
        if page.ppn not in self._held_ppns:
            return
        for (tid, ppn), (_, pm, index) in self.held.items():
            if ppn == page.ppn:
                holder = self.machine.executor.tasks[tid].name if tid >= 0 else "set-up code"
                self.fail(
                    MEMORY_SAFETY,
                    f"{self.who()} freed frame {ppn} while {holder} holds page {index} of "
                    f"{pm.name} in it",
                )
                return

    def check_page(self, page: Page, pm: PageMap, index: int, what: str) -> None:
        """A task is using `page` as page `index` of `pm` right now."""
        if self.machine.allocator.is_free(page.ppn):
            self.fail(
                MEMORY_SAFETY,
                f"{self.who()} {what} page {index} of {pm.name} in frame {page.ppn}, which is free",
            )
            return
        if page.mapping is not pm or page.index != index:
            owner = page.mapping.name if page.mapping is not None else "no map"
            self.fail(
                MEMORY_SAFETY,
                f"{self.who()} {what} page {index} of {pm.name} in frame {page.ppn}, "
                f"which now caches page {page.index} of {owner}",
            )
            return
        slot = page.tree_slot
        if slot is not None and decode_slot(slot.value).refcnt == 0:
            self.fail(
                MEMORY_SAFETY,
                f"{self.who()} {what} page {index} of {pm.name} whose slot counts no reference",
            )

    # -- user accesses --------------------------------------------------------------
    def access(self, owner: object, va: int, ppn: int, write: bool) -> None:
        """The Machine's access hook: a load or store of process `owner` at
        `va` is about to land in frame `ppn`; judged by what `mappings` says
        is mapped there.  Anything but a process's access is not a user access."""
        if not isinstance(owner, MM):
            return
        region = self.mappings.find(owner.pid, va)
        if region is None or region.pm is None:
            problem = self._misplaced(ppn, None, None)
        else:
            own = owner.anon.get(va >> PGSHIFT) if region.private else None
            problem = self._misplaced(ppn, (region.pm, region.index_of(va)), own)
        if problem is not None:
            op = "store" if write else "load"
            self.fail(MEMORY_SAFETY, f"{self.who()} ({op} at {va:#x}, p{owner.pid}) {problem}")

    def access_anywhere(self, owner: object, va: int, ppn: int, write: bool) -> None:
        """The checker's access hook wherever no scenario says what is mapped
        (anonymous memory, a region a scenario maps itself): the frame is not
        free, and an anonymous page in it is the process's own at `va`, never
        another process's or one it gave up (truncate-private, anon-fault-remap)."""
        if not isinstance(owner, MM):
            return
        allocator = self.machine.allocator
        problem = self._misplaced(ppn, None, None)
        if problem is None:
            page = allocator.pages[ppn]
            own = owner.anon.get(va >> PGSHIFT)
            if page.mapping is None and page is not own:
                problem = (
                    f"landed in frame {ppn}, an anonymous page that is not the process's "
                    "own at that address"
                )
        if problem is not None:
            op = "store" if write else "load"
            self.fail(MEMORY_SAFETY, f"{self.who()} ({op} at {va:#x}, p{owner.pid}) {problem}")

    def landed(
        self,
        pid: int,
        va: int,
        write: bool,
        ppn: int,
        expect: tuple[PageMap, int] | None,
        own_copy: Page | None,
    ) -> None:
        """A load or store of process `pid` at `va` lands in frame `ppn`, where
        the region maps page `expect` = (map, index) of a file (None: anonymous
        memory), or the process's own private copy `own_copy`.  The message
        names the access as `access` does, made only when there is a problem."""
        problem = self._misplaced(ppn, expect, own_copy)
        if problem is not None:
            op = "store" if write else "load"
            self.fail(MEMORY_SAFETY, f"{self.who()} ({op} at {va:#x}, p{pid}) {problem}")

    def _misplaced(
        self, ppn: int, expect: tuple[PageMap, int] | None, own_copy: Page | None
    ) -> str | None:
        """What is wrong with an access landing in frame `ppn` (see landed), or None."""
        allocator = self.machine.allocator
        if allocator.is_free(ppn):
            return f"landed in free frame {ppn}"
        if expect is None:
            return None
        page = allocator.pages[ppn]
        if own_copy is not None and page is own_copy:
            return None
        pm, index = expect
        if page.mapping is not pm or page.index != index:
            owner = page.mapping.name if page.mapping is not None else "nobody"
            return (
                f"landed in frame {ppn}, which holds page {page.index} of {owner}, "
                f"not page {index} of {pm.name}"
            )
        return None

    def no_stale_translation(self) -> None:
        """Once removal returns, no PTE or TLB entry names a free frame."""
        machine = self.machine
        free = machine.allocator.is_free
        for proc in machine.procs:
            for core, vpn, ppn in machine.mmu.cached_ppns(proc.pid):
                if free(ppn):
                    self.fail(
                        MEMORY_SAFETY,
                        f"core {core}'s TLB still maps p{proc.pid} page {vpn:#x} to free frame "
                        f"{ppn} after remove_contig returned",
                    )
                    return
            for vpn, word in proc.page_table.ptes(0, 1 << 36):
                if word.value & 1 and free(word.value >> PGSHIFT):
                    self.fail(
                        MEMORY_SAFETY,
                        f"p{proc.pid}'s PTE for page {vpn:#x} still names free frame "
                        f"{word.value >> PGSHIFT} after remove_contig returned",
                    )
                    return
