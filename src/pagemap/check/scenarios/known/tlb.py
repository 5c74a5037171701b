"""The zoo's TLB rows (issue 21): published races of deferred TLB flushes.

Each scenario takes `fix` (0..1, default 1) and turns a switch of the Proc
the kernel reads where the fix lives (kernel/mm.py's
flush_tlb_batched_pending, kernel/mremap.py's _move_ptes), set before any
task runs.  The races themselves are the default family's reclaim-batch and
mremap-race (check/scenarios/tlb.py), run on the kernel of the year.
"""

from __future__ import annotations

from pagemap.check.context import RunContext
from pagemap.check.scenario import Params, Scenario
from pagemap.check.scenarios.known.bugs import FIX, Bug, Step
from pagemap.check.scenarios.tlb import mremap_race, reclaim_batch


def _batch_mprotect(ctx: RunContext, p: Params) -> None:
    """mprotect vs batched flush: Linux 3ea277194daa (2017, "mm, mprotect:
    flush TLB if potentially racing with a parallel reclaim leaving stale
    TLB entries").

    Racing paths: reclaim unmapping a dirty page with its flush deferred
    (try_to_unmap with TTU_BATCH_FLUSH: clear the PTE, mark the page dirty,
    flush at the end of the batch), mprotect to read-only of the same page
    (change_pte_range: a PTE already clear is left alone, and a range where
    nothing changed is not flushed), and a store on another core through its
    TLB entry with D cached.  Interleaving: reclaim clears the PTE and drops
    the map lock to write the page back; mprotect finds nothing to change,
    flushes nothing and returns; the store lands through the stale writable
    entry.  Broken: a store lands after mprotect made the page read-only
    returned (the protection oracle).  The fix: every path that changes
    PTEs first flushes what reclaim left pending (flush_tlb_batched_pending,
    MM._clear_ptes); fix=0 is Proc.flush_batched_first = False.
    """
    reclaim_batch(ctx, bool(p["fix"]))


def _mremap_dirty(ctx: RunContext, p: Params) -> None:
    """mremap vs page cleaning: Linux 5d1904204c99 (2016, "mremap: move_ptes:
    check pte dirty after its removal"; the race Dave Hansen found).

    Racing paths: mremap moving a dirty PTE (move_ptes: clear it, set it at
    the new address, drop the page-table lock, flush the old range after),
    a store on another core through its TLB entry for the old address with
    D cached, and writeback (fsync: find the page at its new address, clean
    the PTE there, flush that range, write the page).  Interleaving: mremap
    moves the PTE and drops the lock; fsync cleans the page and writes it;
    the store lands through the stale entry; mremap flushes.  Broken: a
    store that landed is in neither the backing store nor a dirty page
    (durability).  The fix flushes before the lock is dropped when a dirty
    PTE moved; fix=0 is Proc.mremap_flush_dirty = False (and
    mremap_flush_in_lock off, as in the kernels of then).
    """
    mremap_race(ctx, 0, bool(p["fix"]), False)


def _mremap_stale(ctx: RunContext, p: Params) -> None:
    """mremap stale TLB: Linux eb66ae030829 (2018, "mremap: properly flush
    TLB before releasing the page", CVE-2018-18281).

    Racing paths: mremap moving a clean PTE (after 5d1904204c99 only a dirty
    one was flushed under the lock; a clean one after), a load on another
    core through its TLB entry for the old address, and truncate (unmap the
    page at its new address, flush that range, free the page).
    Interleaving: mremap moves the PTE and drops the lock; truncate unmaps
    and frees the page; the load goes through the stale entry into the free
    frame; mremap flushes.  Broken: an access lands in a free frame (memory
    safety).  The fix flushes before the lock is dropped whenever a present
    PTE moved; fix=0 is Proc.mremap_flush_in_lock = False (the dirty flush
    on, as between the two fixes).
    """
    mremap_race(ctx, 1, True, bool(p["fix"]))


SCENARIOS = (
    Scenario(
        "known-batch-mprotect",
        "3ea277194daa (2017): reclaim defers its flush; mprotect finds the PTE clear and "
        "flushes nothing; a store lands through the stale entry after it returned",
        _batch_mprotect,
        {"fix": 1},
        limits=FIX,
    ),
    Scenario(
        "known-mremap-dirty",
        "5d1904204c99 (2016): mremap moves a dirty PTE and flushes after the unlock; "
        "writeback cleans the page; a store through the stale entry is lost",
        _mremap_dirty,
        {"fix": 1},
        limits=FIX,
        dirty_tracking="dbit",  # a moved D bit is the store's only trace there
    ),
    Scenario(
        "known-mremap-stale",
        "eb66ae030829 (2018, CVE-2018-18281): mremap flushes after the unlock; truncate "
        "frees the page; a load through the stale entry reads a free frame",
        _mremap_stale,
        {"fix": 1},
        limits=FIX,
    ),
)

_MOVE = ("kernel/mremap.py", "Remapping._move_ptes")
_FLUSH = ("kernel/mm.py", "MM.tlb_shootdown", "tlb.flush", "mremap")

BUGS = (
    Bug(
        "known-batch-mprotect",
        2017,
        "3ea277194daa",
        "mprotect vs batched flush: a PTE reclaim cleared is skipped, and so is the flush",
        racy=(
            Step("kernel/unmap_marked.py", "UnmapMarked._pte_unmap_keep_dirty", "cas", "reclaim"),
            Step("kernel/uaccess.py", "UserAccess._store_in_page", "frame.store", "store"),
        ),
        mechanism=(
            Step("kernel/unmap_marked.py", "UnmapMarked._pte_unmap_keep_dirty", "cas", "reclaim"),
            Step("kernel/mm.py", "MM._clear_ptes", "load", "mprotect"),
            Step("kernel/uaccess.py", "UserAccess._store_in_page", "frame.store", "store"),
        ),
        absent=(Step("kernel/mm.py", "MM.tlb_shootdown", "tlb.flush", "mprotect"),),
    ),
    Bug(
        "known-mremap-dirty",
        2016,
        "5d1904204c99",
        "mremap vs page cleaning: a dirty PTE moved, flushed only after the unlock",
        racy=(
            Step(*_MOVE, "swap", "mremap"),
            Step("kernel/uaccess.py", "UserAccess._store_in_page", "frame.store", "store"),
        ),
        mechanism=(
            Step(*_MOVE, "swap", "mremap"),
            Step("kernel/mm.py", "MM._clear_ptes", "fetch_and", "fsync"),
            Step("check/memdisk.py", "MemInode.writepage", "writepage", "fsync"),
            Step("kernel/uaccess.py", "UserAccess._store_in_page", "frame.store", "store"),
            Step(*_FLUSH),
        ),
    ),
    Bug(
        "known-mremap-stale",
        2018,
        "eb66ae030829",
        "mremap stale TLB (CVE-2018-18281): the old range flushed after the unlock",
        racy=(
            Step(*_MOVE, "swap", "mremap"),
            Step("kernel/uaccess.py", "UserAccess.load", "frame.load", "load"),
        ),
        mechanism=(
            Step(*_MOVE, "swap", "mremap"),
            Step("kernel/unmap_marked.py", "UnmapMarked._pte_mark_not_present", "cas", "truncate"),
            Step("kernel/removal.py", "Removal._free_marked", "cas", "truncate"),
            Step("kernel/uaccess.py", "UserAccess.load", "frame.load", "load"),
        ),
    ),
)
