"""Mutants of the races issue 18's scenarios reach (check/scenarios/races.py,
races_ext2.py): each breaks one rule that a scenario there races, and names
that scenario.  Their kinds, as the issue lists them: a reference not taken
(close-frees-in-use), a check left out (closed-file-usable), a free before
the last user is done (drop-held-frees-now).

Rules: as the other families (check/mutants/base.py): a mutant replaces a
method for the length of `applied()`; the budget is DPOR's at bound 2.
"""

from __future__ import annotations

import errno

from pagemap.check.mutants.base import Mutant
from pagemap.kernel.errors import AlreadyClosed, KernelError
from pagemap.kernel.fs.ext2.fs import Ext2File
from pagemap.kernel.page import PG_DIRTY, PG_PAGEMAP, PG_REMOVAL, Page, lock_page, unlock_page
from pagemap.kernel.pagemap import PageMap
from pagemap.kernel.slot import PM_REFCNT_ONE
from pagemap.kernel.vfs import File


def _get_no_reference(self: Ext2File, op: str) -> None:
    # BUG: the call checks that the file is open but takes no reference: a
    # close racing it is the last close, and frees the unlinked inode (and
    # its blocks) under the call, which then writes into a freed inode.
    if self._closed.load():
        raise AlreadyClosed(f"{self.path}: {op} on a closed file")


def _put_nothing(self: Ext2File) -> None:
    pass


def _close_frees_at_once(self: Ext2File) -> None:
    if not self._closed.swap(1):
        self.inode.open_count.fetch_add(-1)
        self.fs.closed(self.inode)


def _check_open_never(self: File, op: str) -> None:
    # BUG: the check is gone: a call on a file closed before it began goes
    # through (pwrite writes, mmap maps), as if the close had not happened.
    pass


def _drop_held_frees_now(self: PageMap, page: Page) -> int:
    # BUG: truncate frees a held page's frame at once, with its holder's
    # reference still out: the holder copies from a frame that another file's
    # page may already be using, and its put frees the frame a second time.
    lock_page(page)
    try:
        with self.lock:
            if self.tree.lookup(page.index) != page.ppn:
                self.flags.fetch_and(page.ppn, ~PG_REMOVAL)
                dropped = 0
            else:
                self.tree.delete(page.index)
                self.num_pages -= 1
                if self.lru is not None:
                    self.lru.removed(page)
                self.flags.fetch_and(page.ppn, ~(PG_DIRTY | PG_REMOVAL | PG_PAGEMAP))
                page.error = KernelError("dropped by truncate", errno=errno.ENXIO)
                dropped = 1
    finally:
        unlock_page(page)
    if dropped:
        self.slots.fetch_add(page.ppn, -PM_REFCNT_ONE)
        self._free_detached(page)
    else:
        self.put_page(page)
    return dropped


ROOM2_MUTANTS = (
    Mutant(
        "close-frees-in-use",
        "an ext2 call takes no reference on its file: a racing last close frees the "
        "unlinked inode under it",
        "ext2-close-unlinked",
        {"_get": _get_no_reference, "_put": _put_nothing, "close": _close_frees_at_once},
        budget=100,
        target=Ext2File,
    ),
    Mutant(
        "closed-file-usable",
        "a call on a file does not check that it is open",
        "close-use",
        {"_check_open": _check_open_never},
        budget=50,
        target=File,
    ),
    Mutant(
        "drop-held-frees-now",
        "truncate frees a held page's frame at once, not at its holder's last put",
        "truncate-held",
        {"_drop_held": _drop_held_frees_now},
        budget=500,
    ),
)

__all__ = ["ROOM2_MUTANTS"]
