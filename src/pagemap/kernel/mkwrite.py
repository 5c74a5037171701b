"""page_mkwrite: the write fault of write-protect dirty tracking.

Under `dirty_tracking="wp"` (Machine), a shared file page is mapped writable
only after a write fault told its page that it is about to be stored into,
as Linux tracks dirty shared pages: a read fault maps it read-only, and
writeback write-protects every PTE of a page before it writes the page
(page_mkclean, kernel/rmap.py; clear_page_dirty_for_io, kernel/writeback.py).
So the first store to a clean page always faults, and comes here.

The protocol (Linux's do_shared_fault / wp_page_shared since b827e496c893):

    lock_page
    the filesystem's page_mkwrite      (ext2 allocates a hole's blocks)
    PG_DIRTY                           before the PTE is writable
    install the PTE, writable          (the fault handler's _install)
    unlock_page                        only now

Why each order: writeback holds the page lock from page_mkclean until
writepage returns, so a fault that holds it until its PTE is writable and
its page dirty is either wholly before a writeback (which then sees the page
dirty and write-protects the PTE again) or wholly after (the page is dirty
again).  Dirtying the page before the PTE matters to a writeback that skips
clean pages without their lock (Writeback.writeback under "wp", as Linux's
tagged lookup does): a store through the new PTE from another core must
never land on a page that looks clean.  Shown by the wp-mkwrite scenario,
its mutants (check/mutants/wp.py) and the zoo's rows of
check/scenarios/known/wp.py, which turn the two published fixes off:

- `mkwrite_locks_page` (79352894b285, 2007): off, the fault neither locks
  nor waits for the page: it dirties the page and installs the PTE while a
  writeback sits between its page_mkclean and clearing PG_DIRTY;
- `mkwrite_holds_lock` (b827e496c893, 2009): off, the page lock is dropped
  as page_mkwrite returns, before the PTE is writable, so a writeback may
  clean the page in between.

Rules: entered from the fault handler with no lock held and a slot
reference on the page; returns with no lock held.  The filesystem's hook,
`ops.page_mkwrite(pm, page)`, is optional; it runs under the page lock and
may sleep and raise (the error reaches the faulting access, the page lock is
released and nothing is installed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from pagemap.kernel.page import PG_DIRTY, Page, lock_page, unlock_page
from pagemap.kernel.pagemap import PageMap

DIRTY_TRACKING = ("wp", "dbit")


def check_dirty_tracking(mode: object) -> str:
    """`mode` if it names a dirty-tracking mode; ValueError otherwise."""
    if not isinstance(mode, str) or mode not in DIRTY_TRACKING:
        raise ValueError(f"dirty_tracking must be 'wp' or 'dbit', not {mode!r}")
    return mode


class MkwriteSwitches(Protocol):
    """The published fixes this path reads (MM sets them, on)."""

    mkwrite_locks_page: bool
    mkwrite_holds_lock: bool


def page_mkwrite_fault(
    proc: MkwriteSwitches, mapping: PageMap, page: Page, install: Callable[[], bool]
) -> None:
    """A write fault on a shared page of `mapping`: page_mkwrite, dirty, and
    `install` (which maps the page writable), in that order, under the page
    lock; see the module docstring."""
    if not proc.mkwrite_locks_page:
        # 79352894b285's bug, for check/scenarios/known: no page lock, so a
        # writeback between its page_mkclean and its clearing of PG_DIRTY
        # sees neither the new PTE nor the dirtying.
        _mkwrite(mapping, page)
        page.flags.fetch_or(PG_DIRTY)
        install()
        return
    lock_page(page)
    locked = True
    try:
        _mkwrite(mapping, page)
        page.flags.fetch_or(PG_DIRTY)  # before the PTE (mutant mkwrite-dirties-late)
        if not proc.mkwrite_holds_lock:
            # b827e496c893's bug, for check/scenarios/known: page_mkwrite
            # returned the page unlocked, and a writeback cleans it before
            # its PTE is writable.
            unlock_page(page)
            locked = False
        install()
    finally:
        if locked:
            unlock_page(page)


def _mkwrite(mapping: PageMap, page: Page) -> None:
    """The filesystem's page_mkwrite, if it has one; page lock held."""
    hook = getattr(mapping.ops, "page_mkwrite", None)
    if hook is not None:
        hook(mapping, page)


__all__ = ["DIRTY_TRACKING", "check_dirty_tracking", "page_mkwrite_fault"]
