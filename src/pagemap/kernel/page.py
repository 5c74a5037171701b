"""struct page: one per physical frame, and the allocator that hands them out.

A Page's `kref` counts who keeps the frame alive (the page map holds one
reference for every page in it); the last `decref` returns the frame to the
free list.  Frame 0 is never handed out, so a ppn of 0 can mean "no page"
(the page map's slot word relies on it).

Rules: a page's words are changed only by single atomic operations, except
by whoever holds its frame alone (fresh from `alloc`, or being freed), who
may `reset` them.  `alloc` may reclaim (kernel/reclaim.py), so its caller
holds no spinlock.  The page lock is a sleeping lock of the frame table,
hashed wait queues rather than a semaphore per page.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import Any, Protocol

from pagemap.hw.memory import PGSHIFT, PGSIZE, PhysicalMemory
from pagemap.kernel.errors import KernelBug, OutOfMemory
from pagemap.sync.arrays import WordRef
from pagemap.sync.atomic import Word
from pagemap.sync.core import READ, WRITE
from pagemap.sync.executor import Executor


class PageMapping(Protocol):
    """The page map a page is in (Linux's page->mapping), as the page names
    it: kernel/pagemap.py's PageMap, which is built on this module, so it is
    named here by shape.  The page itself only asks whether it has one; who
    reaches a map through its page (reclaim) knows what it holds."""

    @property
    def name(self) -> str: ...


PG_LOCKED = 0x01  # someone holds lock_page(); the page may be mid-load
PG_UPTODATE = 0x02  # the frame holds the backing store's bytes (or newer)
PG_DIRTY = 0x04  # the frame holds bytes the backing store has not seen
PG_BUFFER = 0x08  # the frame is split into buffer heads (block devices)
PG_PAGEMAP = 0x10  # the page belongs to a page map
PG_REMOVAL = 0x20  # a remover marked the page; a convenience, not a lock
PG_REFERENCED = 0x40  # read or written through the VFS since reclaim last looked
PG_FAULTED = 0x80  # read in by a fault: the A bit its own access set is no second use
PG_AGED = 0x100  # dirty when writeback last looked: written back on its next pass
PG_WRITEBACK = 0x200  # being written (write-protect tracking only: kernel/writeback.py)

PG_FLAG_NAMES = (
    (PG_LOCKED, "LOCKED"),
    (PG_UPTODATE, "UPTODATE"),
    (PG_DIRTY, "DIRTY"),
    (PG_BUFFER, "BUFFER"),
    (PG_PAGEMAP, "PAGEMAP"),
    (PG_REMOVAL, "REMOVAL"),
    (PG_REFERENCED, "REFERENCED"),
    (PG_FAULTED, "FAULTED"),
    (PG_AGED, "AGED"),
    (PG_WRITEBACK, "WRITEBACK"),
)


def flag_names(flags: int) -> str:
    """ "UPTODATE|DIRTY" for 0x06; "-" for 0."""
    return "|".join(name for bit, name in PG_FLAG_NAMES if flags & bit) or "-"


class Page:
    """The kernel's record of one frame: a few words, most of them in the
    allocator's per-frame arrays.

    The fields that race live in arrays indexed by frame number, made by the
    executor (sync/arrays.py): the flags, the frame's reference count, the
    page map's slot word and the page lock.  Footprints name them
    ("page.flags", ppn), ("page.kref", ppn), ("pm.slot", ppn),
    ("page.lock", ppn).  The page's index in its map lives in a plain array
    (written only by whoever holds the frame alone, or under the map lock);
    its error and buffer heads, rare, in dicts.  `data` and the word objects
    (`flags`, `kref`, `tree_slot`) are made on use: a name or a view kept per
    frame would cost more than the rest together.
    """

    __slots__ = ("_frames", "mapping", "ppn")

    def __init__(self, ppn: int, frames: FrameTable) -> None:
        self.ppn = ppn
        self._frames = frames
        self.mapping: PageMapping | None = None

    @property
    def data(self) -> memoryview:
        """The frame's PGSIZE bytes, writable in place (a view made now).

        The step that takes the view names the frame in its footprint, as a
        write, since what it does with the bytes is not seen: a pwrite
        copying in, a readpage filling, ext2 setting a bitmap bit all race
        the stores and loads other cores make through mappings
        (check/footprints.py finds the step that forgets)."""
        frames = self._frames
        if frames.touch is not None:
            frames.touch(self.ppn, WRITE)
        start = self.ppn << PGSHIFT
        return frames.view[start : start + PGSIZE]

    @property
    def flags(self) -> Word:
        return WordRef(self._frames.flags, self.ppn)

    @property
    def kref(self) -> Word:
        return WordRef(self._frames.kref, self.ppn)

    @property
    def tree_slot(self) -> Word | None:
        """The page map's slot word for this page, while it has one."""
        return WordRef(self._frames.slots, self.ppn) if self.mapping is not None else None

    @property
    def index(self) -> int:
        return self._frames.index[self.ppn]

    @index.setter
    def index(self, value: int) -> None:
        self._frames.index[self.ppn] = value

    @property
    def error(self) -> Exception | None:
        return self._frames.errors.get(self.ppn)

    @error.setter
    def error(self, exc: Exception | None) -> None:
        if exc is None:
            self._frames.errors.pop(self.ppn, None)
        else:
            self._frames.errors[self.ppn] = exc

    @property
    def buffers(self) -> Any:
        """A block device's buffer heads, when PG_BUFFER."""
        return self._frames.buffers.get(self.ppn)

    @buffers.setter
    def buffers(self, head: Any) -> None:
        if head is None:
            self._frames.buffers.pop(self.ppn, None)
        else:
            self._frames.buffers[self.ppn] = head

    def __repr__(self) -> str:
        frames = self._frames
        return (
            f"Page(ppn={self.ppn}, index={self.index}, "
            f"flags={flag_names(frames.flags.value(self.ppn))}, "
            f"kref={frames.kref.value(self.ppn)})"
        )


class FrameTable:
    """The per-frame words behind every Page of one machine."""

    __slots__ = (
        "buffers",
        "errors",
        "flags",
        "index",
        "kref",
        "locks",
        "mapcount",
        "slots",
        "touch",
        "view",
    )

    def __init__(self, memory: PhysicalMemory, executor: Executor) -> None:
        n = memory.nr_frames
        self.view = memory.view
        # Under the sim, how a step names a frame it uses (Page.data).
        self.touch = executor.touch if executor.has_points else None
        self.flags = executor.atomic_array(n, "page.flags")
        self.kref = executor.atomic_array(n, "page.kref")
        # The page map's slot word of the page in each frame (kernel/slot.py):
        # a slot belongs to the page, and the radix tree maps an index to it.
        self.slots = executor.atomic_array(n, "pm.slot")
        self.locks = executor.lock_table(n, "page.lock")
        # How many more address spaces than one map an anonymous page (Linux's
        # _mapcount, with 0 rather than -1 for none): fork raises it, a COW
        # break and an unmap lower it; 0 on a fresh frame (kernel/mapcount.py).
        self.mapcount = executor.atomic_array(n, "page.mapcount")
        self.index = array("q", [-1]) * n
        self.errors: dict[int, Exception] = {}
        self.buffers: dict[int, Any] = {}


def lock_page(page: Page) -> None:
    """Sleep until this task owns the page lock."""
    frames = page._frames
    frames.locks.down(page.ppn)
    frames.flags.fetch_or(page.ppn, PG_LOCKED)


def unlock_page(page: Page) -> None:
    frames = page._frames
    frames.flags.fetch_and(page.ppn, ~PG_LOCKED)
    frames.locks.up(page.ppn)


class PageAllocator:
    """Hands out frames 1..nr_frames-1; a LIFO free list, so a freed frame is
    the next one reused and a use-after-free shows up as another page's data."""

    def __init__(self, memory: PhysicalMemory, executor: Executor) -> None:
        self.memory = memory
        self.frames = FrameTable(memory, executor)
        self.pages = [Page(ppn, self.frames) for ppn in range(memory.nr_frames)]
        # Highest ppn at the bottom: the first allocations get frames 1, 2, 3...
        self._free = array("l", range(memory.nr_frames - 1, 0, -1))
        # Every frame but 0 (reserved) free: made whole rather than a frame at a time.
        self._is_free = bytearray(b"\x01") * memory.nr_frames
        self._is_free[0] = 0
        self._lock = executor.spinlock("page allocator")
        self._executor = executor
        # Whether footprints matter: under threads a touch does nothing, and
        # the frees of a removal at scale need not call it.
        self._points = executor.has_points
        self.nr_frames = memory.nr_frames
        # Frames freed so far, under the lock: reclaim reads it to tell "memory
        # moved while I looked" from "nothing can be freed".
        self.frees = 0
        # Set by the machine (kernel/reclaim.py): frees frames in the calling
        # task when none is free; True if the caller should try again, False
        # when nothing could be freed.
        self.reclaim: Callable[[], bool] | None = None
        # Told of the frames left free after each allocation (the flusher's
        # low watermark); None when no flusher runs.
        self.on_alloc: Callable[[int], None] | None = None
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
        return bool(self._is_free[ppn])

    def free_frames(self) -> int:
        """How many frames are free, read under the allocator's lock (a task
        deciding what to do from the count must see it as a step)."""
        with self._lock:
            return len(self._free)

    def alloc(self) -> Page:
        """A free frame with kref 1.  As with kpage_alloc, its bytes are
        whatever it last held: readpage overwrites them.

        With no frame free, reclaim in this task (the caller must hold no
        spinlock) and try again; OutOfMemory only once reclaim found nothing
        it may free.
        """
        while True:
            page = self._try_alloc()
            if page is not None:
                return page
            if self.reclaim is None or not self.reclaim():
                raise OutOfMemory(
                    f"out of memory: all {self.nr_frames - 1} page frames are in use"
                    + ("" if self.reclaim is None else " and none holds a page reclaim may free")
                )

    def _try_alloc(self) -> Page | None:
        with self._lock:
            if not self._free:
                return None
            ppn = self._free.pop()
            self._is_free[ppn] = 0
            left = len(self._free)
            # The frame changes hands: this step conflicts with every access
            # to it and to its page's words (sync/core.py, footprints).
            if self._points:
                self._touch_frame(ppn)
        # And so does the step after the release, in which the caller
        # initialises the page's words before its next point.
        if self._points:
            self._touch_frame(ppn)
        self.frames.kref.reset(ppn, 1)
        self.frames.mapcount.reset(ppn, 0)
        if self.on_alloc is not None:
            self.on_alloc(left)
        return self.pages[ppn]

    def mapping_of(self, ppn: int) -> PageMapping | None:
        """The page map frame `ppn`'s page is in, None once it is freed: a
        look with neither the page's lock nor a reference, as reclaim takes at
        its victims before it locks their map.  The step names the frame's
        mapping, which a free and an insertion write, so that DPOR orders the
        look against them (reclaim-remove: kswapd reads a victim's map while a
        remover frees it; the hidden-state check of check/hidden.py found it)."""
        if self._points:
            self._executor.touch(("page.mapping", ppn), READ)
        return self.pages[ppn].mapping

    def _touch_frame(self, ppn: int) -> None:
        ex = self._executor
        ex.touch(ppn, WRITE)
        ex.touch(("page.flags", ppn), WRITE)
        ex.touch(("pm.slot", ppn), WRITE)
        ex.touch(("page.kref", ppn), WRITE)
        ex.touch(("page.lock", ppn), WRITE)
        ex.touch(("page.mapping", ppn), WRITE)
        ex.touch(("page.mapcount", ppn), WRITE)

    def incref(self, page: Page) -> None:
        kref = self.frames.kref
        if kref.fetch_add(page.ppn, 1) == 0:
            kref.fetch_add(page.ppn, -1)
            raise KernelBug(f"page_incref of frame {page.ppn}, which is free (use after free)")

    def decref(self, page: Page) -> None:
        kref = self.frames.kref
        old = kref.fetch_add(page.ppn, -1)
        if old == 0:
            kref.fetch_add(page.ppn, 1)
            raise KernelBug(f"page_decref of frame {page.ppn}, which is already free (double free)")
        if old == 1:
            self._release(page)

    def decref_many(self, pages: list[Page]) -> None:
        """decref each page; the frames that reach 0 go back in one batch,
        under one acquisition of the allocator's lock."""
        kref = self.frames.kref
        last: list[Page] = []
        double: Page | None = None
        olds = kref.fetch_add_many([page.ppn for page in pages], -1)
        for page, old in zip(pages, olds, strict=True):
            if old == 1:
                last.append(page)
            elif old == 0:
                kref.fetch_add(page.ppn, 1)
                double = double or page
        self._reset_many(last)
        with self._lock:
            for page in last:
                self._free.append(page.ppn)
                self._is_free[page.ppn] = 1
            self.frees += len(last)
        if double is not None:
            # Raised once the others are freed, so that the bug leaks nothing else.
            raise KernelBug(
                f"page_decref of frame {double.ppn}, which is already free (double free)"
            )

    def _release(self, page: Page) -> None:
        self._reset(page)
        with self._lock:
            self._free.append(page.ppn)
            self._is_free[page.ppn] = 1
            self.frees += 1

    def _reset_many(self, pages: list[Page]) -> None:
        """_reset of each page, each array's words reset in one call."""
        if self._points or self.on_free is not None:
            for page in pages:
                if self._points:
                    self._touch_frame(page.ppn)
                if self.on_free is not None:
                    self.on_free(page)
        frames = self.frames
        ppns = [page.ppn for page in pages]
        frames.flags.reset_many(ppns, 0)
        frames.slots.reset_many(ppns, 0)
        frames.locks.reset_many(ppns, 1)
        index = frames.index
        for page in pages:
            index[page.ppn] = -1
            page.mapping = None
        if frames.errors or frames.buffers:
            for ppn in ppns:
                frames.errors.pop(ppn, None)
                frames.buffers.pop(ppn, None)

    def _reset(self, page: Page) -> None:
        # Freeing writes the frame and its words without points of their
        # own: name them in this step's footprint, so a use racing the free
        # is a dependence the checker reorders (sync/core.py).
        ppn = page.ppn
        if self._points:
            self._touch_frame(ppn)
        if self.on_free is not None:
            self.on_free(page)
        frames = self.frames
        frames.flags.reset(ppn, 0)
        frames.slots.reset(ppn, 0)
        frames.locks.reset(ppn, 1)
        frames.index[ppn] = -1
        page.mapping = None
        if frames.errors:
            frames.errors.pop(ppn, None)
        if frames.buffers:
            frames.buffers.pop(ppn, None)
