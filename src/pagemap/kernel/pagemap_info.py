"""Reporting on a page map: print_page_map_info (PageMap.info), and the
accounting oracle's check of a quiescent map (check_quiescent).

Part of PageMap: kernel/pagemap.py mixes this class in.  Rules: info takes
the map lock to read the region list; check_quiescent is for when no task
runs, and reads every word without a lock (reading is not a scheduling
point there: nothing can race it).
"""

from __future__ import annotations

from pagemap.kernel.invalidate import InvalidateLock
from pagemap.kernel.page import PG_LOCKED, PG_PAGEMAP, PG_REMOVAL, PageAllocator
from pagemap.kernel.radix import RadixTree
from pagemap.kernel.rmap import VMRegion
from pagemap.kernel.slot import decode_slot
from pagemap.sync.arrays import AtomicArray
from pagemap.sync.atomic import AtomicWord
from pagemap.sync.locks import SpinLock


class PageMapInfo:
    """What a page map reports of itself."""

    # Fields PageMap.__init__ sets.
    name: str
    lock: SpinLock
    tree: RadixTree
    slots: AtomicArray
    allocator: PageAllocator
    vmrs: list[VMRegion]
    num_pages: int
    removal: AtomicWord
    invalidate_lock: InvalidateLock

    def info(self) -> str:
        """print_page_map_info, as a string."""
        lines = [f"Page Map {self.name}", f"\tNum pages: {self.num_pages}"]
        with self.lock:
            for v in self.vmrs:
                lines.append(
                    f"\tVMR proc {v.proc.pid}: ({v.base:#x} - {v.end:#x}): "
                    f"prot {v.prot:#x}, flags {v.flags:#x}, foff {v.foff:#x}"
                )
        return "\n".join(lines)

    def check_quiescent(self) -> list[str]:
        """What is wrong with the map when no task is running (the accounting
        oracle): every complaint as a sentence; an empty list if all is well."""
        problems: list[str] = []
        count = 0
        for i, ppn in self.tree.entries():  # items(), as one list: cheaper to walk
            count += 1
            word = decode_slot(self.slots.value(ppn))
            if word.refcnt:
                problems.append(f"{self.name}: slot {i} still has {word.refcnt} reference(s)")
            if word.removal:
                problems.append(f"{self.name}: slot {i} still has REMOVAL set")
            if not word.ppn:
                problems.append(f"{self.name}: slot {i} has no page")
                continue
            if word.ppn != ppn:
                problems.append(f"{self.name}: slot {i} of frame {ppn} names frame {word.ppn}")
                continue
            page = self.allocator.pages[ppn]
            flags = page.flags.value
            if not flags & PG_PAGEMAP:
                problems.append(f"{self.name}: page {i} (frame {page.ppn}) lacks PG_PAGEMAP")
            if flags & (PG_LOCKED | PG_REMOVAL):
                problems.append(f"{self.name}: page {i} (frame {page.ppn}) left LOCKED or REMOVAL")
            if page.index != i or page.mapping is not self:
                problems.append(f"{self.name}: page at slot {i} does not point back at it")
            if self.allocator.is_free(page.ppn):
                problems.append(f"{self.name}: page {i} sits in free frame {page.ppn}")
        if count != self.num_pages:
            problems.append(f"{self.name}: nr_pages is {self.num_pages} but the tree holds {count}")
        if self.lock.held:
            problems.append(f"{self.name}: the map lock is still held")
        if self.removal.value:
            problems.append(f"{self.name}: the removal flag is still set")
        if self.invalidate_lock.held:
            problems.append(f"{self.name}: the invalidate lock is still held")
        return problems
