"""Mutants of the rooms issue 18's race scenarios reach (check/scenarios/races.py,
races_ext2.py): each breaks one rule that a scenario there races, and names
that scenario.

Rules: as the other families (check/mutants/base.py): a mutant replaces a
method for the length of `applied()`; the budget is DPOR's at bound 2.
"""

from __future__ import annotations

from pagemap.check.mutants.base import Mutant
from pagemap.kernel.errors import AlreadyClosed
from pagemap.kernel.fs.ext2.fs import Ext2File


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
)

__all__ = ["ROOM2_MUTANTS"]
