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
`fail(oracle, message)`, which ends the schedule at once.

Checking at these events, not at every step, costs nothing per step; it is as
strong, since a held page can only be freed or reused through `freed`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from pagemap.hw.memory import PGSHIFT
from pagemap.kernel.page import Page
from pagemap.kernel.pagemap import PageMap
from pagemap.kernel.slot import decode_slot
from pagemap.oracles import MEMORY_SAFETY

if TYPE_CHECKING:
    from pagemap.machine import Machine

Fail = Callable[[str, str], NoReturn]


class MemorySafety:
    def __init__(self, machine: Machine, fail: Fail, who: Callable[[], str]) -> None:
        self.machine = machine
        self.fail = fail
        self.who = who
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

    def check_page(self, page: Page, pm: PageMap, index: int, what: str) -> None:
        """A task is using `page` as page `index` of `pm` right now."""
        if self.machine.allocator.is_free(page.ppn):
            self.fail(
                MEMORY_SAFETY,
                f"{self.who()} {what} page {index} of {pm.name} in frame {page.ppn}, which is free",
            )
        if page.mapping is not pm or page.index != index:
            owner = page.mapping.name if page.mapping is not None else "no map"
            self.fail(
                MEMORY_SAFETY,
                f"{self.who()} {what} page {index} of {pm.name} in frame {page.ppn}, "
                f"which now caches page {page.index} of {owner}",
            )
        slot = page.tree_slot
        if slot is not None and decode_slot(slot.value).refcnt == 0:
            self.fail(
                MEMORY_SAFETY,
                f"{self.who()} {what} page {index} of {pm.name} whose slot counts no reference",
            )

    # -- user accesses --------------------------------------------------------------
    def landed(
        self, what: str, ppn: int, expect: tuple[PageMap, int] | None, own_copy: Page | None
    ) -> None:
        """An access (`what`, for messages) lands in frame `ppn`, where the
        region maps page `expect` = (map, index) of a file (None: anonymous
        memory), or the process's own private copy `own_copy`."""
        allocator = self.machine.allocator
        if allocator.is_free(ppn):
            self.fail(MEMORY_SAFETY, f"{what} landed in free frame {ppn}")
        if expect is None:
            return
        page = allocator.pages[ppn]
        if own_copy is not None and page is own_copy:
            return
        pm, index = expect
        if page.mapping is not pm or page.index != index:
            owner = page.mapping.name if page.mapping is not None else "nobody"
            self.fail(
                MEMORY_SAFETY,
                f"{what} landed in frame {ppn}, which holds page {page.index} of {owner}, "
                f"not page {index} of {pm.name}",
            )

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
            for vpn, word in proc.page_table.ptes(0, 1 << 36):
                if word.value & 1 and free(word.value >> PGSHIFT):
                    self.fail(
                        MEMORY_SAFETY,
                        f"p{proc.pid}'s PTE for page {vpn:#x} still names free frame "
                        f"{word.value >> PGSHIFT} after remove_contig returned",
                    )
