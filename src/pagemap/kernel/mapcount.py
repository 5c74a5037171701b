"""The map count of an anonymous page: how many address spaces share it.

An anonymous page (zero fill, or a private copy of a file page) is kept by
each address space that has it in its `anon` dict (kernel/mm.py), each with
one page reference.  Only fork puts one page in two of them (kernel/fork.py),
and it raises the count; a copy-on-write break (kernel/cow.py) or an unmap
(MM._disown) lowers it.  The word is Linux's page->_mapcount with the same
offset: 0 means one mapper (or none), n means n + 1.  A fresh frame's word is
0 (PageAllocator._try_alloc), so a process that never forked never touches it.

Rules: every change is one atomic operation on ("page.mapcount", ppn); the
count never goes below 0 (a drop when it is 0 is the last mapper leaving,
which changes nothing).  `shared` is a scheduling point: a write fault's
reuse decision reads it as Linux's do_wp_page reads the map count.
"""

from __future__ import annotations

from pagemap.kernel.page import Page


def share(page: Page) -> None:
    """One more address space maps `page` (fork)."""
    page._frames.mapcount.fetch_add(page.ppn, 1)


def unshare(page: Page) -> None:
    """One address space stops mapping `page`; the count stays at 0 once the
    last sharer is gone (a compare-and-swap, as two sharers may leave at once:
    two cores of parent and child unmapping together must not take it below
    zero, where it would read as shared for ever)."""
    words = page._frames.mapcount
    old = words.load(page.ppn)
    while old and not words.cas(page.ppn, old, old - 1):
        old = words.load(page.ppn)


def shared(page: Page) -> bool:
    """Whether another address space maps `page` too."""
    return bool(page._frames.mapcount.load(page.ppn))


def mapcount(page: Page) -> int:
    """How many address spaces map `page` (at least 1), with no scheduling
    point: for oracles and tests."""
    return page._frames.mapcount.value(page.ppn) + 1


__all__ = ["mapcount", "share", "shared", "unshare"]
