"""struct page: one per physical frame, and the allocator that hands them out.

A Page's `kref` counts who keeps the frame alive (the page map holds one
reference for every page in it); the last `decref` returns the frame to the
free list.  Frame 0 is never handed out, so a ppn of 0 can mean "no page"
(the page map's slot word relies on it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pagemap.hw.memory import PhysicalMemory
from pagemap.kernel.errors import KernelBug, OutOfMemory
from pagemap.sync.atomic import AtomicWord
from pagemap.sync.core import WRITE
from pagemap.sync.executor import Executor
from pagemap.sync.locks import Semaphore

if TYPE_CHECKING:
    from pagemap.kernel.pagemap import PageMap

PG_LOCKED = 0x01  # someone holds lock_page(); the page may be mid-load
PG_UPTODATE = 0x02  # the frame holds the backing store's bytes (or newer)
PG_DIRTY = 0x04  # the frame holds bytes the backing store has not seen
PG_BUFFER = 0x08  # the frame is split into buffer heads (block devices)
PG_PAGEMAP = 0x10  # the page belongs to a page map
PG_REMOVAL = 0x20  # a remover marked the page; a convenience, not a lock

PG_FLAG_NAMES = (
    (PG_LOCKED, "LOCKED"),
    (PG_UPTODATE, "UPTODATE"),
    (PG_DIRTY, "DIRTY"),
    (PG_BUFFER, "BUFFER"),
    (PG_PAGEMAP, "PAGEMAP"),
    (PG_REMOVAL, "REMOVAL"),
)


def flag_names(flags: int) -> str:
    """ "UPTODATE|DIRTY" for 0x06; "-" for 0."""
    return "|".join(name for bit, name in PG_FLAG_NAMES if flags & bit) or "-"


class Page:
    """The kernel's record of one frame."""

    __slots__ = (
        "buffers",
        "data",
        "error",
        "flags",
        "index",
        "kref",
        "mapping",
        "ppn",
        "sem",
        "tree_slot",
    )

    def __init__(self, ppn: int, data: memoryview, executor: Executor) -> None:
        self.ppn = ppn
        self.data = data
        self.flags: AtomicWord = executor.atomic(0, f"page[{ppn}].flags")
        self.kref: AtomicWord = executor.atomic(0, f"page[{ppn}].kref")
        self.sem: Semaphore = executor.semaphore(1, f"page[{ppn}].sem")
        self.mapping: PageMap | None = None
        self.index = -1
        self.tree_slot: AtomicWord | None = None
        self.error: Exception | None = None
        self.buffers: Any = None  # a block device's buffer heads, when PG_BUFFER

    def __repr__(self) -> str:
        return (
            f"Page(ppn={self.ppn}, index={self.index}, flags={flag_names(self.flags.value)}, "
            f"kref={self.kref.value})"
        )


def lock_page(page: Page) -> None:
    """Sleep until this task owns the page lock."""
    page.sem.down()
    page.flags.fetch_or(PG_LOCKED)


def unlock_page(page: Page) -> None:
    page.flags.fetch_and(~PG_LOCKED)
    page.sem.up()


class PageAllocator:
    """Hands out frames 1..nr_frames-1; a LIFO free list, so a freed frame is
    the next one reused and a use-after-free shows up as another page's data."""

    def __init__(self, memory: PhysicalMemory, executor: Executor) -> None:
        self.memory = memory
        self.pages = [Page(ppn, memory.frame(ppn), executor) for ppn in range(memory.nr_frames)]
        # Highest ppn at the bottom: the first allocations get frames 1, 2, 3...
        self._free = list(range(memory.nr_frames - 1, 0, -1))
        self._free_set = set(self._free)
        self._lock = executor.spinlock("page allocator")
        self._executor = executor
        self.nr_frames = memory.nr_frames
        # Set by the flusher: wakes it and sleeps until a round has run;
        # returns the frames that round left to be had, or None if it cannot help.
        self.reclaim: Callable[[], int | None] | None = None
        # Called with each page whose frame is about to go back on the free
        # list (the checker's memory-safety oracle); kernel code never sets it.
        self.on_free: Callable[[Page], None] | None = None

    @property
    def nr_free(self) -> int:
        return len(self._free)

    @property
    def nr_used(self) -> int:
        """Frames handed out, not counting the reserved frame 0."""
        return self.nr_frames - 1 - len(self._free)

    def is_free(self, ppn: int) -> bool:
        return ppn in self._free_set

    def alloc(self) -> Page:
        """A free frame with kref 1.  As with kpage_alloc, its bytes are
        whatever it last held: readpage overwrites them.

        With no frame free, wake the flusher and wait for it (the caller must
        hold no spinlock); OutOfMemory only once a round freed nothing.
        """
        while True:
            page = self._try_alloc()
            if page is not None:
                return page
            available = self.reclaim() if self.reclaim is not None else None
            if not available:
                raise OutOfMemory(
                    f"out of memory: all {self.nr_frames - 1} page frames are in use"
                    + ("" if available is None else " and the flusher could free none")
                )

    def _try_alloc(self) -> Page | None:
        with self._lock:
            if not self._free:
                return None
            ppn = self._free.pop()
            self._free_set.discard(ppn)
            # The frame changes hands: this step conflicts with every access
            # to it and to its page's metadata (sync/core.py, footprints).
            self._executor.touch(ppn, WRITE)
        page = self.pages[ppn]
        self._executor.touch(page.flags, WRITE)
        page.kref.reset(1)
        return page

    def incref(self, page: Page) -> None:
        if page.kref.fetch_add(1) == 0:
            page.kref.fetch_add(-1)
            raise KernelBug(f"page_incref of frame {page.ppn}, which is free (use after free)")

    def decref(self, page: Page) -> None:
        old = page.kref.fetch_add(-1)
        if old == 0:
            page.kref.fetch_add(1)
            raise KernelBug(f"page_decref of frame {page.ppn}, which is already free (double free)")
        if old == 1:
            self._release(page)

    def _release(self, page: Page) -> None:
        # Freeing writes the frame and its metadata without points of their
        # own: name them in this step's footprint, so a use racing the free
        # is a dependence the checker reorders (sync/core.py).
        self._executor.touch(page.ppn, WRITE)
        self._executor.touch(page.flags, WRITE)
        if self.on_free is not None:
            self.on_free(page)
        page.flags.reset(0)
        page.mapping = None
        page.index = -1
        page.tree_slot = None
        page.error = None
        page.buffers = None
        page.sem.reset(1)
        with self._lock:
            self._free.append(page.ppn)
            self._free_set.add(page.ppn)
