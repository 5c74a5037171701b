"""The zoo's scenarios: published page-cache races, each with its fix on a switch.

Each scenario takes `fix` (0..1, default 1): with 1 the kernel runs as it is;
with 0 the scenario turns off the switch the kernel reads where the published
fix lives (an attribute of the Proc or the PageMap, set before any task
runs), and the bug is back at the level our model has.  No scenario carries
kernel code of its own.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from pagemap.check.context import RunContext
from pagemap.check.scenario import Params, Scenario
from pagemap.check.shadow import SLOT, ShadowFile
from pagemap.hw.memory import PGSIZE
from pagemap.kernel.errors import BusError, SegmentationFault
from pagemap.kernel.mman import MAP_SHARED, PROT_READ
from pagemap.kernel.mman import PROT_RW as RW

FIX = {"fix": (0, 1)}


def _zap_mkclean(ctx: RunContext, p: Params) -> None:
    """zap vs mkclean: Linux 1cf35d47712d (2014, "mm: split 'tlb_flush_mmu()'
    into tlb flushing and memory freeing parts").

    Racing paths: munmap on one core (zap_pte_range: clear a dirty PTE, mark
    the page dirty, drop the page-table lock, flush the TLBs later), a store
    on a second core of the same process through its TLB entry with D
    cached, and writeback (fsync: clean the page, write it).  Interleaving:
    munmap clears the PTE and marks the page dirty; fsync cleans and writes
    it; the store lands through the stale entry; munmap flushes.  Broken: a
    store that landed is neither in the backing store nor in a dirty page
    (durability).  The fix flushes before the lock is dropped and before
    the page is marked dirty (MM._settle_dirty); fix=0 is
    Proc.flush_before_unlock = False.
    """
    f = ShadowFile(ctx, 1)
    proc = ctx.machine.process()
    proc.flush_before_unlock = bool(p["fix"])
    base = f.map(proc, 1, RW, MAP_SHARED)
    f.store(proc, base + SLOT)  # set-up runs on core 0: its entry caches D

    def storer() -> None:
        with contextlib.suppress(SegmentationFault):  # unmapped by now
            f.store(proc, base + SLOT)  # through the entry, if it is still there

    def unmapper() -> None:
        proc.munmap(base, PGSIZE)
        f.unmapped(proc, base)

    ctx.machine.spawn(storer, core=0, name="store")
    ctx.machine.spawn(unmapper, core=1, name="munmap")
    ctx.machine.spawn(f.fsync, core=1, name="fsync")
    f.end_checks()


def _fault_truncate(ctx: RunContext, p: Params) -> None:
    """fault vs truncate: Linux d00806b18315 (2007, "mm: fix fault vs
    invalidate race for linear mappings").

    Racing paths: a fault on a page of a shared mapping (look the page up,
    check the size, install the PTE) and truncate (store the new size, unmap
    the range, drop the pages).  Interleaving: the fault looks the page up
    and checks the size; truncate shrinks the file, unmaps (nothing yet) and
    drops the page, which the fault still holds; the fault installs its PTE
    and puts the page, whose frame is freed.  Broken: a PTE maps a page that
    left the file, and the access lands in a free frame (memory safety).
    Linux's fix locks the page in the fault and rechecks its mapping; ours
    rechecks the size under the pte_lock truncate's unmap takes
    (FaultHandler._install); fix=0 is Proc.recheck_size_at_install = False.
    The published race was with invalidation, of which truncate is the case
    our kernel has.
    """
    f = ShadowFile(ctx, 2)
    proc = ctx.machine.process()
    proc.recheck_size_at_install = bool(p["fix"])
    base = f.map(proc, 2, PROT_READ, MAP_SHARED)
    f.pread(PGSIZE)  # page 1 cached: the fault finds it

    def reader() -> None:
        with contextlib.suppress(BusError):  # truncated first: a bus error
            f.load(proc, base + PGSIZE)

    ctx.machine.spawn(reader, name="fault")
    ctx.machine.spawn(f.truncate, PGSIZE, name="truncate")
    f.end_checks()


def _removal_first_vmr(ctx: RunContext, p: Params) -> None:
    """removal skips regions without the first page: Akaros 2014, the seed
    (pm_remove_contig's vmr loop; docs/seed.md, "Every overlapping VMR is
    unmapped").

    Racing paths: loads through a region that maps page 1 of the file (not
    page 0), and removal of pages [0, 2).  Interleaving: the page is mapped
    and in use; removal marks it, visits only the regions that map page 0,
    and frees it.  Broken: a PTE and a TLB entry name a free frame once
    removal returns, and a load may land there (memory safety).  Fixed by
    visiting every region that overlaps the range (Removal._unmap_marked);
    fix=0 is PageMap.unmap_every_vmr = False.
    """
    f = ShadowFile(ctx, 2)
    f.pm.unmap_every_vmr = bool(p["fix"])
    proc = ctx.machine.process()
    base = f.map(proc, 1, PROT_READ, MAP_SHARED, first=1)
    f.load(proc, base)  # mapped, and cached in core 0's TLB

    def remover() -> None:
        f.pm.remove_contig(0, 2)
        f.no_stale_translation()

    ctx.machine.spawn(f.load, proc, base + SLOT, core=0, name="load")
    ctx.machine.spawn(remover, core=1, name="remover")
    f.end_checks()


def _drops_dirty(ctx: RunContext, p: Params) -> None:
    """munmap and mprotect drop D: Akaros 2014 (the seed's munmap and
    mprotect cleared PTEs without passing D to the page; docs/seed.md).

    Racing paths: a store on one core (the MMU sets D in the PTE) and munmap
    (call=0) or mprotect to read-only (call=1) on another, which clears D.
    Interleaving: the store sets D and lands; the call clears the PTE's D and
    marks nothing.  Broken: the page is clean with the store in it, and
    nothing will write it (durability at the end).  Fixed by marking the
    page dirty for every D bit cleared (MM._settle_dirty); fix=0 is
    Proc.settle_keeps_dirty = False.
    """
    f = ShadowFile(ctx, 1)
    proc = ctx.machine.process()
    proc.settle_keeps_dirty = bool(p["fix"])
    base = f.map(proc, 1, RW, MAP_SHARED)
    f.load(proc, base)  # mapped, clean, before the race

    def storer() -> None:
        with contextlib.suppress(SegmentationFault):  # unmapped or read-only by now
            f.store(proc, base + SLOT)

    def changer() -> None:
        if p["call"]:
            proc.mprotect(base, PGSIZE, PROT_READ)
        else:
            proc.munmap(base, PGSIZE)
            f.unmapped(proc, base)

    ctx.machine.spawn(storer, core=1, name="store")
    ctx.machine.spawn(changer, core=0, name="mprotect" if p["call"] else "munmap")
    f.end_checks()


def _pte_clear(ctx: RunContext, p: Params) -> None:
    """the non-atomic PTE clear: Akaros 2014, the seed
    (__pm_mark_not_present's read, then write, of the PTE; docs/seed.md,
    "PTEs change by compare-and-swap").

    Racing paths: removal's first pass clearing P in a PTE, and a store
    through a TLB entry that does not cache D, so the MMU re-walks and sets D
    with a compare-and-swap (one core: the race needs no second one).
    Interleaving: removal reads the PTE (clean); the MMU sets D and the
    store lands; removal writes back what it read, less P, and the D bit is
    gone; removal then finds the page clean and frees it unwritten.  Broken:
    the store is lost (durability).  Fixed by clearing P with a
    compare-and-swap (Removal._pte_mark_not_present);
    fix=0 is PageMap.atomic_pte_clear = False.
    """
    f = ShadowFile(ctx, 1)
    f.pm.atomic_pte_clear = bool(p["fix"])
    proc = ctx.machine.process()
    base = f.map(proc, 1, RW, MAP_SHARED)
    f.load(proc, base)  # present and clean: a store re-walks to set D

    def remover() -> None:
        f.pm.remove_contig(0, 1)
        f.no_stale_translation()

    ctx.machine.spawn(f.store, proc, base + SLOT, core=0, name="store")
    ctx.machine.spawn(remover, core=0, name="remover")
    f.end_checks()


SCENARIOS = (
    Scenario(
        "known-zap-mkclean",
        "1cf35d47712d (2014): munmap flushes after dropping the lock; fsync cleans the "
        "page; a store through the stale entry is lost",
        _zap_mkclean,
        {"fix": 1},
        limits=FIX,
        dirty_tracking="dbit",  # as the seed's kernel tracks, so as its trace was pinned
    ),
    Scenario(
        "known-fault-truncate",
        "d00806b18315 (2007): a fault installs a PTE to a page truncate drops",
        _fault_truncate,
        {"fix": 1},
        limits=FIX,
    ),
    Scenario(
        "known-removal-first-vmr",
        "Akaros 2014: removal unmaps only the regions that map the first page",
        _removal_first_vmr,
        {"fix": 1},
        limits=FIX,
    ),
    Scenario(
        "known-drops-dirty",
        "Akaros 2014: munmap (call=0) or mprotect (call=1) clears D without marking the page",
        _drops_dirty,
        {"fix": 1, "call": 0},
        limits={**FIX, "call": (0, 1)},
        dirty_tracking="dbit",  # a D bit is the store's only trace there
    ),
    Scenario(
        "known-pte-clear",
        "Akaros 2014: removal clears P by a read then a write, losing a D bit set between",
        _pte_clear,
        {"fix": 1},
        limits=FIX,
        cores=1,  # the race needs no second core, and each core costs removal 3 steps
        dirty_tracking="dbit",  # a D bit is the store's only trace there
    ),
)


@dataclass(frozen=True)
class Step:
    """A step as the recorder names it (check/recorder.py `where`): the file
    and function of the innermost frame outside the executor and hardware,
    the kind of its scheduling point, and optionally its task."""

    file: str  # "kernel/mm.py"
    function: str  # "MM._clear_ptes"
    kind: str  # "fetch_and"
    task: str = ""

    def matches(self, location: str, kind: str, task: str = "") -> bool:
        """Whether a step logged at `location` ("kernel/mm.py:163
        MM._clear_ptes"), of `kind`, by `task`, is this one."""
        where, _, function = location.partition(" ")
        return (
            where.rpartition(":")[0] == self.file
            and function == self.function
            and kind == self.kind
            and (not self.task or task == self.task)
        )

    def __str__(self) -> str:
        who = f" by {self.task}" if self.task else ""
        return f"{self.file}:{self.function} ({self.kind}{who})"


@dataclass(frozen=True)
class Bug:
    """A row of the zoo: its scenario, the fix, and the steps that make it.

    `racy`: the racing pair, in the racing order; with the fix on, some
    schedule must run the first and then the second (by different tasks),
    or the scenario never reached its race (a vacuous pass).  `mechanism`:
    the steps of the published mechanism, in order, that the shrunk trace
    with the fix off must contain; `absent`: steps it must not contain (the
    work the bug skips)."""

    scenario: str
    year: int
    commit: str
    title: str
    racy: tuple[Step, Step]
    mechanism: tuple[Step, ...]
    absent: tuple[Step, ...] = ()


_STORE = ("kernel/uaccess.py", "UserAccess._store_in_page")
_LOAD = ("kernel/uaccess.py", "UserAccess._load_in_page")

BUGS = (
    Bug(
        "known-zap-mkclean",
        2014,
        "1cf35d47712d",
        "zap vs mkclean: munmap flushes TLBs after dropping the page-table lock",
        racy=(
            Step("kernel/mm.py", "MM._clear_ptes", "fetch_and", "munmap"),
            Step(*_STORE, "frame.store", "store"),
        ),
        mechanism=(
            Step("kernel/mm.py", "MM._clear_ptes", "fetch_and", "munmap"),
            Step("kernel/mm.py", "MM._settle_dirty", "fetch_or", "munmap"),
            Step("kernel/writeback.py", "Writeback.clear_page_dirty_for_io", "fetch_and", "fsync"),
            Step("check/memdisk.py", "MemInode.writepage", "writepage", "fsync"),
            Step(*_STORE, "frame.store", "store"),
            Step("kernel/mm.py", "MM.tlb_shootdown", "tlb.flush", "munmap"),
        ),
    ),
    Bug(
        "known-fault-truncate",
        2007,
        "d00806b18315",
        "fault vs truncate: a fault maps a page truncate is dropping",
        racy=(
            Step("check/memdisk.py", "MemInode.set_size", "store", "truncate"),
            Step("kernel/fault.py", "FaultHandler._install", "lock", "fault"),
        ),
        mechanism=(
            Step("check/memdisk.py", "MemInode.set_size", "store", "truncate"),
            Step("kernel/truncate_pages.py", "TruncatePages._drop_held", "lock", "truncate"),
            Step("kernel/fault.py", "FaultHandler._set_pte", "cas", "fault"),
            Step(*_LOAD, "frame.load", "fault"),
        ),
    ),
    Bug(
        "known-removal-first-vmr",
        2014,
        "Akaros seed",
        "removal unmaps only the regions that map the first page of its range",
        racy=(
            Step("kernel/uaccess.py", "UserAccess.load", "frame.load", "load"),
            Step("kernel/unmap_marked.py", "UnmapMarked._pte_mark_not_present", "cas", "remover"),
        ),
        mechanism=(
            Step("kernel/removal.py", "Removal._mark_for_removal", "cas", "remover"),
            Step("kernel/removal.py", "Removal._free_marked", "cas", "remover"),
        ),
        absent=(Step("kernel/unmap_marked.py", "UnmapMarked._pte_mark_not_present", "load"),),
    ),
    Bug(
        "known-drops-dirty",
        2014,
        "Akaros seed",
        "munmap and mprotect clear D bits without marking the pages dirty",
        racy=(
            Step(*_STORE, "cas", "store"),
            Step("kernel/mm.py", "MM._clear_ptes", "fetch_and", "munmap"),
        ),
        mechanism=(
            Step(*_STORE, "cas", "store"),
            Step(*_STORE, "frame.store", "store"),
            Step("kernel/mm.py", "MM._clear_ptes", "fetch_and", "munmap"),
        ),
        absent=(Step("kernel/mm.py", "MM._settle_dirty", "fetch_or"),),
    ),
    Bug(
        "known-pte-clear",
        2014,
        "Akaros seed",
        "removal clears P by a read and a write: a D bit set between is lost",
        racy=(
            Step("kernel/unmap_marked.py", "UnmapMarked._pte_mark_not_present", "load", "remover"),
            Step(*_STORE, "cas", "store"),
        ),
        mechanism=(
            Step("kernel/unmap_marked.py", "UnmapMarked._pte_mark_not_present", "load", "remover"),
            Step(*_STORE, "cas", "store"),
            Step(*_STORE, "frame.store", "store"),
            Step("kernel/unmap_marked.py", "UnmapMarked._pte_mark_not_present", "store", "remover"),
            Step("kernel/removal.py", "Removal._free_marked", "cas", "remover"),
        ),
    ),
)
