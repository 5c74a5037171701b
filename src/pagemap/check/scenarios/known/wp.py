"""The zoo's rows of write-protect dirty tracking (kernel/mkwrite.py, the
page_mkclean of kernel/rmap.py): Linux's races between a write fault and
writeback, each with its fix on a switch the kernel reads where it lives.

Both run the scenarios of check/scenarios/wp.py under dirty_tracking="wp";
their loss is a store that msync does not write (oracles/synced.py).
"""

from __future__ import annotations

from pagemap.check.context import RunContext
from pagemap.check.scenario import Params, Scenario
from pagemap.check.scenarios.known.bugs import FIX, Bug, Step
from pagemap.check.scenarios.wp import mkclean_race, mkwrite_race

_STORE = ("kernel/uaccess.py", "UserAccess._store_in_page")
_MKWRITE = ("kernel/mkwrite.py", "page_mkwrite_fault")


def _mkclean_fault(ctx: RunContext, p: Params) -> None:
    """mkclean vs fault: Linux 79352894b285 (2007, "mm: fix
    clear_page_dirty_for_io vs fault race").

    Racing paths: writeback (fsync: clear_page_dirty_for_io write-protects
    the page's PTEs, then clears PG_DIRTY, then writes) and stores on a
    second core, the first of which faults on the write-protected PTE.
    Interleaving: page_mkclean write-protects; the write fault, taking no page
    lock, marks the page dirty and makes the PTE writable again, and its
    store lands; writeback clears PG_DIRTY and writes; the next store lands
    through the TLB entry the fault left, with the page clean.  Broken:
    msync returns without that store (it looks for dirty pages only).  The
    fix makes the fault wait for the page lock writeback holds (ours holds it
    from page_mkwrite until the PTE is writable); fix=0 is
    Proc.mkwrite_locks_page = False.
    """
    mkclean_race(ctx, p, "mkwrite_locks_page")


def _mkwrite_writeback(ctx: RunContext, p: Params) -> None:
    """mkwrite vs writeback: Linux b827e496c893 (2009, "mm: close
    page_mkwrite races").

    Racing paths: a write fault on a clean, write-protected page
    (page_mkwrite, dirty the page, make the PTE writable) and a writeback
    (msync of another core of the process, after its own store).
    Interleaving: page_mkwrite returns with the page unlocked and dirty;
    the writeback cleans and writes it while its PTE is still read-only;
    the fault makes the PTE writable and its store lands on a clean page.
    Broken: the filesystem believes the page clean while stores reach it,
    and msync returns without the store.  The fix has page_mkwrite return
    the page locked and the fault hold it until the PTE is writable; fix=0
    is Proc.mkwrite_holds_lock = False.
    """
    mkwrite_race(ctx, p, "mkwrite_holds_lock")


SCENARIOS = (
    Scenario(
        "known-mkclean-fault",
        "79352894b285 (2007): a write fault between page_mkclean and clearing PG_DIRTY "
        "leaves a clean page mapped writable; msync loses the next store",
        _mkclean_fault,
        {"fix": 1},
        limits=FIX,
        dirty_tracking="wp",
    ),
    Scenario(
        "known-mkwrite-writeback",
        "b827e496c893 (2009): page_mkwrite returns the page unlocked; writeback cleans it "
        "before its PTE is writable; msync loses the store",
        _mkwrite_writeback,
        {"fix": 1},
        limits=FIX,
        dirty_tracking="wp",
    ),
)

BUGS = (
    Bug(
        "known-mkclean-fault",
        2007,
        "79352894b285",
        "mkclean vs fault: a write fault reinstalls a writable PTE before PG_DIRTY is cleared",
        racy=(
            Step("kernel/rmap.py", "ReverseMap._mkclean_one", "cas", "fsync"),
            Step("kernel/fault.py", "FaultHandler._set_pte", "cas", "store"),
        ),
        mechanism=(
            Step("kernel/rmap.py", "ReverseMap._mkclean_one", "cas", "fsync"),
            Step("kernel/fault.py", "FaultHandler._set_pte", "cas", "store"),
            Step("kernel/writeback.py", "Writeback.clear_page_dirty_for_io", "fetch_and", "fsync"),
            Step(*_STORE, "frame.store", "store"),
        ),
    ),
    Bug(
        "known-mkwrite-writeback",
        2009,
        "b827e496c893",
        "mkwrite vs writeback: page_mkwrite returns the page unlocked, before its PTE is writable",
        racy=(
            Step(*_MKWRITE, "fetch_or", "store0"),
            Step("kernel/writeback.py", "Writeback.clear_page_dirty_for_io", "fetch_and", "store1"),
        ),
        mechanism=(
            Step(*_MKWRITE, "fetch_or", "store0"),
            Step("kernel/writeback.py", "Writeback.clear_page_dirty_for_io", "fetch_and", "store1"),
            Step("kernel/fault.py", "FaultHandler._set_pte", "cas", "store0"),
        ),
    ),
)
