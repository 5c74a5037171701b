"""Mutants of hole punching (kernel/fallocate.py) and its invalidate lock
(kernel/invalidate.py)."""

from __future__ import annotations

import pagemap.kernel.fallocate as fallocate_module
from pagemap.check.mutants.base import Mutant
from pagemap.hw.memory import PGSHIFT
from pagemap.kernel.invalidate import InvalidateLock
from pagemap.kernel.page import PG_REMOVAL, Page
from pagemap.kernel.truncate_pages import TruncatePages
from pagemap.kernel.vfs import Inode


def _down_read_ignores_writer(self: InvalidateLock) -> None:
    # BUG: a reader counts itself in whatever the word says, so a fault
    # adds a page while a punch holds the lock exclusive (ea3d7209ca01).
    if self.enabled:
        self.word.fetch_add(1)


def _punch_hole_unlocked(inode: Inode, offset: int, length: int) -> None:
    # BUG: the punch drops the range's pages and frees the blocks without
    # the invalidate lock: a fault reads a page back in between (ea3d7209ca01).
    first, last = -(-offset >> PGSHIFT), (offset + length) >> PGSHIFT
    if last > first:
        inode.mapping.truncate_pages(first, last - first)
    inode.punch_backing(offset, length)


def _unmap_again_unmarked(self: TruncatePages, page: Page) -> None:
    # BUG: the second unmap trusts PG_REMOVAL to still name the held page,
    # but pass 5 cleared it: a PTE a fault installed after the round is
    # skipped and outlives the frame (punch-mremap found it on the kernel).
    self._unmap_marked(page.index, page.index + 1, include_pinned=True)
    self.flags.fetch_and(page.ppn, ~PG_REMOVAL)


PUNCH_MUTANTS = (
    Mutant(
        "invalidate-read-ignores-writer",
        "a page is added to the cache while a hole punch holds the invalidate lock",
        "punch-fault",
        {"down_read": _down_read_ignores_writer},
        budget=500,
        target=InvalidateLock,
    ),
    Mutant(
        "punch-without-invalidate-lock",
        "a hole punch drops pages and frees blocks without the invalidate lock",
        "punch-fault",
        {"punch_hole": _punch_hole_unlocked},
        budget=500,
        target=fallocate_module,
    ),
    Mutant(
        "drop-held-unmarked",
        "truncate's second unmap of a held page skips a PTE a fault installed after the round",
        "punch-mremap",
        {"_unmap_again": _unmap_again_unmarked},
        budget=3000,
        target=TruncatePages,
    ),
)
