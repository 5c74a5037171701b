"""The zoo's rows of write-protect dirty tracking (kernel/mkwrite.py, the
page_mkclean of kernel/rmap.py): Linux's races between a write fault and
writeback, each with its fix on a switch the kernel reads where it lives.

The first two run the scenarios of check/scenarios/wp.py, the third its own,
all under dirty_tracking="wp"; each loss is a store that msync does not
write (oracles/synced.py).
"""

from __future__ import annotations

from pagemap.check.context import RunContext
from pagemap.check.scenario import Params, Scenario
from pagemap.check.scenarios.known.bugs import FIX, Bug, Step
from pagemap.check.scenarios.wp import mkclean_race, mkwrite_race
from pagemap.check.shadow import ShadowFile
from pagemap.hw.memory import PGSIZE
from pagemap.kernel.mman import MAP_SHARED, PROT_EXEC
from pagemap.kernel.mman import PROT_RW as RW

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


def _mkclean_skip(ctx: RunContext, p: Params) -> None:
    """page_mkclean skips a PTE briefly not present: Linux 479db0bf408e (2008,
    "mm: dirty page tracking race fix").

    Racing paths: mprotect on one core (PROT_READ|PROT_WRITE to
    PROT_READ|PROT_WRITE|PROT_EXEC: change_pte_range takes each PTE, leaving
    it not present, and puts it back, under the page-table lock) and
    writeback (fsync: page_mkclean write-protects the page's PTEs, PG_DIRTY
    is cleared, the page written).  Interleaving: mprotect takes the dirty,
    writable PTE; page_mkclean looks at it without the page-table lock,
    finds it not present and skips it; mprotect puts it back, writable and
    dirty; writeback cleans and writes the page; a store lands through the
    TLB entry on the clean page.  Broken: msync returns without that store.
    The fix has page_mkclean take the page-table lock before it looks
    (page_check_address's `sync`); ours always reads the PTE under pte_lock
    (ReverseMap.page_mkclean); fix=0 is PageMap.mkclean_locks_pte = False.
    """
    f = ShadowFile(ctx, 1)
    f.pm.mkclean_locks_pte = bool(p["fix"])
    proc = ctx.machine.process()
    base = f.map(proc, 1, RW, MAP_SHARED)
    f.store(proc, base)  # set-up on core 0: dirty, writable, D cached in its TLB

    def protector() -> None:
        proc.mprotect(base, PGSIZE, RW | PROT_EXEC)  # the PTE gone for an instant
        f.store(proc, base)
        f.msync(proc, base, PGSIZE)

    ctx.machine.spawn(protector, core=0, name="mprotect")
    ctx.machine.spawn(f.fsync, core=1, name="fsync")
    f.end_checks()


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
    Scenario(
        "known-mkclean-skip",
        "479db0bf408e (2008): page_mkclean skips a PTE mprotect holds not present for an "
        "instant; msync loses the next store",
        _mkclean_skip,
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
        # The fault marks the page dirty between page_mkclean and the clearing of
        # PG_DIRTY, which takes that mark away; a store then lands on a clean
        # page.  Whether the fault's PTE is written before the clearing (the
        # commit's telling) or after it, no lock orders the two without the fix,
        # and the shrinker may give either: the mechanism asks for neither.
        mechanism=(
            Step("kernel/rmap.py", "ReverseMap._mkclean_one", "cas", "fsync"),
            Step(*_MKWRITE, "fetch_or", "store"),
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
    Bug(
        "known-mkclean-skip",
        2008,
        "479db0bf408e",
        "dirty-tracking race: page_mkclean skips a PTE that is briefly not present",
        racy=(
            Step("kernel/mm.py", "MM._modify_ptes", "swap", "mprotect"),
            Step("kernel/rmap.py", "ReverseMap.page_mkclean", "lock", "fsync"),
        ),
        mechanism=(
            Step("kernel/mm.py", "MM._modify_ptes", "swap", "mprotect"),
            Step("kernel/rmap.py", "ReverseMap.page_mkclean", "load", "fsync"),
            Step("kernel/writeback.py", "Writeback.clear_page_dirty_for_io", "fetch_and", "fsync"),
            Step(*_STORE, "frame.store", "mprotect"),
        ),
        absent=(Step("kernel/rmap.py", "ReverseMap._mkclean_one", "cas"),),
    ),
)
