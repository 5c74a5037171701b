"""Copying between a caller and a file's cached pages, a page at a time:
the read path under Inode.read (Akaros's generic file read), and the page
walk write uses.

Part of Inode: kernel/vfs.py's Inode is this class with read's checks,
write, truncate, fallocate and fsync added.  Rules: no lock is taken here; each page is used
under one slot reference (lookup or find_run, then put_page or put_run), and
its bytes are copied while that reference is held.  A read loads the size
once and copies what the pages hold.  Running out of frames or a failed
readpage after some bytes were copied gives those bytes (a short count, as
POSIX has it); before any, it raises.
"""

from __future__ import annotations

from collections.abc import Callable

from pagemap.hw.memory import PGMASK, PGSHIFT, PGSIZE
from pagemap.kernel.errors import IOFailure, OutOfMemory
from pagemap.kernel.page import PG_REFERENCED, PG_UPTODATE, Page
from pagemap.kernel.pagemap import PageMap
from pagemap.sync.arrays import AtomicArray
from pagemap.sync.atomic import AtomicWord
from pagemap.sync.core import READ, WRITE
from pagemap.sync.executor import Executor

# The most pages a read takes from the page map in one run, and so holds at
# once: Linux's read path takes a batch of about as many (PAGEVEC_SIZE, 15),
# few enough that readers in use do not starve reclaim of frames.
READ_RUN = 16


class PageCopy:
    """The copying half of struct inode's file operations."""

    # What the copy uses of its inode: fields Inode.__init__ sets.
    executor: Executor
    name: str
    size_word: AtomicWord
    mapping: PageMap
    _view: memoryview
    _flags: AtomicArray
    _points: bool

    # -- read --------------------------------------------------------------------

    def _read_pages(self, offset: int, end: int) -> list[bytes]:
        """The bytes of [offset, end), a run of cached pages at a time
        (PageMap.find_run: one map-lock round trip a run), a page not cached
        through lookup (read, or waited for); each run's bytes are copied
        straight from its frames, once, while the run is held (the frames'
        slices joined: a fresh buffer filled slice by slice would fault its
        every page in first).  Short counts as _each_page: what was copied
        before a failure; nothing, and the error, if it was the first page."""
        pos = offset
        mapping, view, flags = self.mapping, self._view, self._flags
        last = (end - 1) >> PGSHIFT
        parts: list[bytes] = []
        try:
            while pos < end:
                index = pos >> PGSHIFT
                run = mapping.find_run(index, min(last - index + 1, READ_RUN))
                hit = bool(run)
                if not hit:
                    page, read = mapping.lookup(index)
                    run = [page]
                    hit = not read
                try:
                    slices = []
                    for page in run:
                        ppn = page.ppn
                        if self._points:
                            self.executor.point("frame_read", ppn, READ)
                        if hit and not flags.load(ppn) & PG_REFERENCED:
                            flags.fetch_or(ppn, PG_REFERENCED)  # _referenced, inline
                        off = pos & PGMASK
                        chunk = min(PGSIZE - off, end - pos)
                        start = (ppn << PGSHIFT) + off
                        slices.append(view[start : start + chunk])
                        pos += chunk
                    parts.append(b"".join(slices))
                finally:
                    mapping.put_run(run)
        except (OutOfMemory, IOFailure):
            if pos == offset:
                raise
        return parts

    def _read_in_page(self, index: int, off: int, n: int) -> bytes:
        """The hit path of read(): one page, one copy, straight from its frame,
        under a slot reference as every use of a page is (pm_load_page, the
        copy, pm_put_page)."""
        mapping = self.mapping
        flags = self._flags
        page = mapping._find_page(index)
        if page is None or not flags.load(page.ppn) & PG_UPTODATE:
            page, read = mapping.lookup_found(index, page)
        else:
            read = False
        try:
            ppn = page.ppn
            if self._points:
                self.executor.point("frame_read", ppn, READ)
            if not read and not flags.load(ppn) & PG_REFERENCED:
                flags.fetch_or(ppn, PG_REFERENCED)  # _referenced, inline
            start = (ppn << PGSHIFT) + off
            return self._view[start : start + n].tobytes()
        finally:
            mapping.put_page(page)

    def _referenced(self, ppn: int) -> None:
        """A use of a cached page through the VFS: reclaim's policy hears of it
        when it next looks (kernel/reclaim.py).  A miss is no such use: the
        read that brought the page in was its first."""
        flags = self._flags
        if not flags.load(ppn) & PG_REFERENCED:
            flags.fetch_or(ppn, PG_REFERENCED)

    def _each_page(
        self, offset: int, end: int, what: str, copy: Callable[[Page, int, int, int], None]
    ) -> int:
        """copy(page, offset in page, length, bytes done so far) for each page
        of [offset, end), holding a slot reference; the bytes done.

        Running out of frames or a failed readpage after some bytes gives
        that short count, as POSIX has it; before any, it raises.
        """
        pos = offset
        mapping = self.mapping
        try:
            while pos < end:
                index, off = divmod(pos, PGSIZE)
                chunk = min(PGSIZE - off, end - pos)
                page, read = mapping.lookup(index)
                try:
                    self.executor.point(what, page.ppn, WRITE if what == "frame_write" else READ)
                    if not read:
                        self._referenced(page.ppn)
                    copy(page, off, chunk, pos - offset)
                finally:
                    mapping.put_page(page)
                pos += chunk
        except (OutOfMemory, IOFailure):
            if pos == offset:
                raise
        return pos - offset
