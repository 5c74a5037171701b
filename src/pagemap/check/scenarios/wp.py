"""Write-protect dirty tracking: page_mkclean and page_mkwrite racing stores.

Under `dirty_tracking="wp"` (kernel/mkwrite.py) a store through a shared
mapping finds its page dirty because a write fault dirtied it, and writeback
write-protects every PTE of a page before it cleans it (page_mkclean,
kernel/rmap.py).  msync and fsync collect no D bits there: a store that lands
through a writable PTE on a page writeback believes clean is lost at the next
msync, which the synced oracle judges as it returns (oracles/synced.py).

- wp-mkclean: a page dirty and writable (core 0's TLB caches it dirty); core 0
  stores twice and msyncs while core 1 fsyncs.  Every store after fsync's
  page_mkclean must fault and dirty the page again.
- wp-mkwrite: a clean page mapped read-only; two cores of the process each
  store once (each faults) and msync, so each fault races the other's
  writeback.  The page must be dirty before its PTE is writable, and locked
  until then.
- wp-mremap: a page dirty and writable; mremap moves it to a new address
  while fsync cleans it, then stores there and msyncs.  page_mkclean walks
  the regions under the map lock, which mremap's new region must take to
  join the list before its PTE moves in: without it (the lock mutant
  kernel/rmap.py:ReverseMap.page_mkclean:self.lock) the walk copies the
  list before the new region joins and finds the old address empty once
  the PTE moved, so the PTE stays writable, the store after fsync lands
  without a fault on a page fsync made clean, and msync writes nothing:
  the synced oracle judges the store lost.

The zoo's rows of 79352894b285 and b827e496c893 (check/scenarios/known/wp.py)
run these two with the published fixes off.
"""

from __future__ import annotations

from pagemap.check.context import RunContext
from pagemap.check.scenario import Params, Scenario
from pagemap.check.shadow import SLOT, Region, ShadowFile
from pagemap.hw.memory import PGSIZE
from pagemap.kernel.mman import MAP_SHARED
from pagemap.kernel.mman import PROT_RW as RW
from pagemap.kernel.mremap import MREMAP_FIXED, MREMAP_MAYMOVE
from pagemap.kernel.proc import Proc


def mkclean_race(ctx: RunContext, p: Params, switch: str = "") -> None:
    """wp-mkclean; `switch`: a Proc switch the zoo turns off with fix=0."""
    f = ShadowFile(ctx, 1)
    proc = ctx.machine.process()
    if switch:
        setattr(proc, switch, bool(p["fix"]))
    base = f.map(proc, 1, RW, MAP_SHARED)
    f.store(proc, base)  # set-up on core 0: dirty, writable, D cached in its TLB

    def storer(proc: Proc) -> None:
        f.store(proc, base)  # after fsync's page_mkclean: a write fault
        f.store(proc, base)  # through the entry that fault left
        f.msync(proc, base, PGSIZE)

    ctx.machine.spawn(storer, proc, core=0, name="store")
    ctx.machine.spawn(f.fsync, core=1, name="fsync")
    f.end_checks()


def mkwrite_race(ctx: RunContext, p: Params, switch: str = "") -> None:
    """wp-mkwrite; `switch` as for mkclean_race."""
    f = ShadowFile(ctx, 1)
    proc = ctx.machine.process()
    if switch:
        setattr(proc, switch, bool(p["fix"]))
    base = f.map(proc, 1, RW, MAP_SHARED)
    f.load(proc, base)  # mapped read-only, clean

    def storer(slot: int) -> None:
        f.store(proc, base + slot)  # a write fault: page_mkwrite
        f.msync(proc, base, PGSIZE)  # a writeback racing the other core's fault

    ctx.machine.spawn(storer, 0, core=0, name="store0")
    ctx.machine.spawn(storer, SLOT, core=1, name="store1")
    f.end_checks()


def _mremap_mkclean(ctx: RunContext, p: Params) -> None:
    """wp-mremap: fsync's page_mkclean races mremap moving the page's
    writable, dirty PTE; the store after the move must fault if fsync has
    cleaned the page."""
    f = ShadowFile(ctx, 1)
    proc = ctx.machine.process()
    base = f.map(proc, 1, RW, MAP_SHARED)
    target = base + 4 * PGSIZE
    f.store(proc, base)  # set-up: a write fault, so dirty and writable

    def mover() -> None:
        got = proc.mremap(base, PGSIZE, PGSIZE, MREMAP_MAYMOVE | MREMAP_FIXED, target)
        f.regions.append(Region(proc, got, got + PGSIZE, 0, False))
        f.store(proc, got)  # through the moved PTE, writable only if nobody cleaned it
        f.msync(proc, got, PGSIZE)

    ctx.machine.spawn(mover, core=0, name="mremap")
    ctx.machine.spawn(f.fsync, core=1, name="fsync")
    f.end_checks()


SCENARIOS = (
    Scenario(
        "wp-mkclean",
        "write-protect tracking: stores and msync race fsync's page_mkclean of a dirty page",
        mkclean_race,
        dirty_tracking="wp",
    ),
    Scenario(
        "wp-mkwrite",
        "write-protect tracking: two cores' write faults on a clean page race each other's msync",
        mkwrite_race,
        dirty_tracking="wp",
    ),
    Scenario(
        "wp-mremap",
        "write-protect tracking: fsync's page_mkclean races mremap moving the page's "
        "writable PTE, then a store and msync at the new address",
        _mremap_mkclean,
        dirty_tracking="wp",
    ),
)
