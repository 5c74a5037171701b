"""Writeback: how dirty pages reach the backing store without leaving the
cache (Linux's mm/page-writeback.c).

Part of PageMap: kernel/pagemap.py mixes this class in and sets its fields;
removal (kernel/removal.py) writes its marked pages through the same
per-page write.  What is here:

    clear_page_dirty_for_io   take a page's dirty state for a write
    _writeback_page           the per-page write (write_one_page)
    writeback                 fsync's and msync's loop over a range
    writeback_expired         the flusher's loop (dirty_expire), and
    write_expired             the flusher's round over every page map

Rules: the per-page write holds the page lock from clearing PG_DIRTY until
writepage returns, and is entered with no other lock held (it sleeps).  A
page whose writepage fails stays dirty; the loops try every page and raise
the first error at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from pagemap.kernel.errors import KernelError
from pagemap.kernel.errseq import WritebackErrors
from pagemap.kernel.page import PG_AGED, PG_DIRTY, PG_WRITEBACK, Page, lock_page, unlock_page
from pagemap.kernel.radix import RadixTree
from pagemap.sync.arrays import AtomicArray
from pagemap.sync.core import READ
from pagemap.sync.executor import Executor
from pagemap.sync.locks import SpinLock

if TYPE_CHECKING:
    from pagemap.kernel.removal import PageMapStats


class WritePage(Protocol):
    """What writeback asks of its map's ops: kernel/pagemap.py's PageMapOps
    (named here by shape, as pagemap.py mixes this module in), given the
    PageMap being written."""

    def writepage(self, pm: Any, page: Page) -> None: ...


class Writeback:
    """The writeback half of struct page_map."""

    # What writeback uses of its page map: fields PageMap.__init__ sets.
    name: str
    executor: Executor
    ops: WritePage
    tree: RadixTree
    flags: AtomicArray
    lock: SpinLock
    stats: PageMapStats
    dirty_tracking: str
    wb_err: WritebackErrors  # kernel/errseq.py: a failed write is recorded there

    if TYPE_CHECKING:

        def page_mkclean(self, page: Page) -> bool: ...

        def _check_range(self, index: int, nr_pages: int) -> tuple[int, int]: ...

        def _find_page(self, index: int) -> Page | None: ...

        def put_page(self, page: Page) -> None: ...

    def clear_page_dirty_for_io(self, page: Page) -> bool:
        """Take the page's dirty state for a write: clear PG_DIRTY (and
        PG_AGED), True if it was dirty.  The page lock is held.

        Under write-protect tracking every PTE of the page is made read-only
        first, its D and W bits counted as the page's dirt (page_mkclean,
        kernel/rmap.py), as Linux does: a store after this faults and
        dirties the page again (kernel/mkwrite.py), which it can do only once
        we let go of the page lock, after writepage."""
        if self.dirty_tracking != "wp":
            return bool(page.flags.fetch_and(~(PG_DIRTY | PG_AGED)) & PG_DIRTY)
        if self.page_mkclean(page):
            page.flags.fetch_or(PG_DIRTY)
        # PG_WRITEBACK before PG_DIRTY goes, as Linux moves the page from the
        # dirty tag to the writeback tag in one step: writeback() below skips
        # a page that is neither without its lock, so a page between the two
        # would let an fsync return before this write lands.
        page.flags.fetch_or(PG_WRITEBACK)
        if page.flags.fetch_and(~(PG_DIRTY | PG_AGED)) & PG_DIRTY:
            return True
        page.flags.fetch_and(~PG_WRITEBACK)
        return False

    def _writeback_page(self, page: Page) -> bool:
        """Write the page if dirty; True if it was written.

        The page lock is held from clearing PG_DIRTY until writepage returns,
        so two writebacks of one page never overlap, and an fsync that finds
        the page clean because a remover is mid-write sleeps until that write
        is done.  (The seed cleared PG_DIRTY under the map lock and wrote with
        no lock at all: an fsync could return before the remover's write landed,
        and an older copy could land after a newer one.)  Exercised by the
        writeback-remove scenario and test_writeback_racing_writers_loses_nothing;
        the dirty-cleared-late mutant breaks it and is caught.
        """
        lock_page(page)
        try:
            if not self.clear_page_dirty_for_io(page):
                return False
            try:
                self.ops.writepage(self, page)
            except BaseException as exc:
                if self.wb_err.record(exc):  # errseq.py; its failed_page switch is "keep":
                    page.flags.fetch_or(PG_DIRTY)  # not written, so still dirty: nothing lost
                raise
            finally:
                if self.dirty_tracking == "wp":
                    page.flags.fetch_and(~PG_WRITEBACK)
            self.stats.writebacks.add(1)
            return True
        finally:
            unlock_page(page)

    def writeback(self, index: int, nr_pages: int) -> int:
        """Write back the dirty pages in [index, index + nr_pages), evicting none.

        Returns how many pages were written.  Behind msync and fsync.  On a
        writepage error the remaining pages are still tried, the failed ones
        stay dirty, and the first error is raised at the end.
        """
        lo, hi = self._check_range(index, nr_pages)
        with self.lock:
            if self.dirty_tracking == "wp":
                # Only the pages dirty or being written now, as Linux's tagged
                # lookups find them (the second to wait for the write): a
                # page's dirt is in PG_DIRTY before any PTE of it is writable
                # (kernel/mkwrite.py; mutant mkwrite-dirties-late).
                flags = self.flags
                busy = PG_DIRTY | PG_WRITEBACK
                indices = [i for i, ppn in self.tree.items(lo, hi) if flags.load(ppn) & busy]
            else:
                indices = [i for i, _ in self.tree.items(lo, hi)]
        return self._each_cached(indices, self._writeback_page)

    def nr_dirty_hint(self) -> int:
        """How many cached pages are dirty, as a hint for writeback: each
        word is read with no point of its own, but named in the step's
        footprint, so the checker still orders it against writers."""
        flags = self.flags
        touch = self.executor.touch
        count = 0
        with self.lock:
            for _, ppn in self.tree.items():
                touch(("page.flags", ppn), READ)
                if flags.value(ppn) & PG_DIRTY:
                    count += 1
        return count

    def writeback_expired(self, everything: bool = False) -> int:
        """Writeback's pass: write the pages found dirty by the previous pass
        too (PG_AGED), mark the newly dirty ones; with `everything`, write
        every dirty page.  Evicts nothing; the pages written."""
        flags = self.flags
        with self.lock:
            indices = [i for i, ppn in self.tree.items() if flags.load(ppn) & PG_DIRTY]

        def expire(page: Page) -> bool:
            old = flags.load(page.ppn)
            if old & PG_DIRTY and (everything or old & PG_AGED):
                return self._writeback_page(page)
            if old & PG_DIRTY:
                flags.fetch_or(page.ppn, PG_AGED)
            return False

        return self._each_cached(indices, expire)

    def _each_cached(self, indices: list[int], write: Callable[[Page], bool]) -> int:
        """Run `write` on each page still cached at `indices`, holding a
        reference; how many it wrote.  A page whose write fails stays dirty
        (_writeback_page's rule); the rest are still tried, and the first
        error is raised at the end."""
        written = 0
        first_error: OSError | None = None
        for i in indices:
            page = self._find_page(i)
            if page is None:
                continue
            try:
                written += write(page)
            except OSError as exc:
                first_error = first_error or exc
            finally:
                self.put_page(page)
        if first_error is not None:
            raise first_error
        return written


def write_expired(
    page_maps: Sequence[Writeback], dirty_limit: int
) -> tuple[int, list[KernelError]]:
    """The flusher's writeback round over every page map: expired pages, or
    every dirty page when more than `dirty_limit` are dirty.  The pages
    written, and the errors met (a failed writepage keeps its page dirty;
    the next round tries again)."""
    dirty = sum(pm.nr_dirty_hint() for pm in list(page_maps))
    everything = dirty > dirty_limit
    written = 0
    errors: list[KernelError] = []
    for pm in list(page_maps):
        try:
            written += pm.writeback_expired(everything)
        except KernelError as exc:
            errors.append(exc)
    return written, errors


__all__ = ["WritePage", "Writeback", "write_expired"]
