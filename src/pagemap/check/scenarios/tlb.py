"""TLB scenarios (issue 21): ranged flushes, reclaim's batched flushes,
mremap's flush, and the protection oracle.

Each runs a small file (check/shadow.py) mapped into one process, a task on
a second core storing through TLB entries it cached itself, and a task
calling what must flush them.  Besides the shadow's oracles (memory safety,
coherence, durability at the end), `guard` installs the protection oracle
(oracles/protection.py): after a call that took access away returns, no
access it forbids may land, which a flush of too small a range lets through
even when nothing is lost.

Four more race the windows the lock mutants found unguarded by any other
scenario (`pagemap check --mutants --auto`, docs/checker.md "Lock
mutants"): munmap-mprotect and mlock-munmap (two splits of one region's
list, vmr_lock),
mremap-msync (msync's region and its PTE, vmr_lock),
munmap-shootdown-remove (munmap's D bit in flight across its shootdown,
pte_lock against removal's second pass) and mprotect-exec-remove (a PTE
not present for an instant, pte_lock against removal's first pass).
"""

from __future__ import annotations

import contextlib

from pagemap.check.context import RunContext
from pagemap.check.scenario import Params, Scenario
from pagemap.check.shadow import SLOT, Region, ShadowFile
from pagemap.hw.memory import PGSIZE
from pagemap.kernel.errors import BusError, NotMapped, SegmentationFault
from pagemap.kernel.mman import MAP_SHARED, PROT_EXEC, PROT_NONE, PROT_READ
from pagemap.kernel.mman import PROT_RW as RW
from pagemap.kernel.mremap import MREMAP_FIXED, MREMAP_MAYMOVE
from pagemap.kernel.proc import Proc
from pagemap.oracles.protection import Protection


def guard(ctx: RunContext) -> Protection:
    """The protection oracle, judging every access as it lands, before the
    hook already installed (the shadow's) sees it."""
    oracle = Protection(ctx.fail)
    inner = ctx.machine.on_access

    def hook(owner: object, va: int, ppn: int, write: bool) -> None:
        if isinstance(owner, Proc):
            what = f"{ctx.who()}'s {'store' if write else 'load'} at {va:#x} (p{owner.pid})"
            oracle.landed(what, owner.pid, va, write)
        if inner is not None:
            inner(owner, va, ppn, write)

    ctx.machine.on_access = hook
    return oracle


def mprotect(oracle: Protection, proc: Proc, addr: int, length: int, prot: int) -> None:
    """mprotect, telling the oracle what it allows as it begins and what it
    forbids once it returned."""
    oracle.allow(proc.pid, addr, addr + length)
    proc.mprotect(addr, length, prot)
    oracle.forbid(proc.pid, addr, addr + length, prot, "mprotect")


def munmap(oracle: Protection, proc: Proc, addr: int, length: int) -> None:
    """munmap, telling the oracle once it returned.  The shadow keeps the
    region: a store racing the call still computes what it would write
    there, and faults (or is caught landing by the oracle)."""
    proc.munmap(addr, length)
    oracle.forbid(proc.pid, addr, addr + length, PROT_NONE, "munmap")


def _tlb_range(ctx: RunContext, p: Params) -> None:
    """mprotect of two pages to read-only (call=0) or munmap of them (call=1)
    races a store on another core through the entries it cached, to the
    second page of the range and to a third page outside it.  The call's
    flush names [base, base + 2 pages): the entry of the second page must go
    before the call returns (the protection oracle), the third's may stay."""
    f = ShadowFile(ctx, 3)
    oracle = guard(ctx)
    proc = ctx.machine.process()
    base = f.map(proc, 3, RW, MAP_SHARED)

    def storer() -> None:
        f.store(proc, base + 2 * PGSIZE)  # outside the range: its entry may survive
        for _ in range(2):
            with contextlib.suppress(SegmentationFault):  # read-only or unmapped by now
                f.store(proc, base + PGSIZE)  # the second time through its D entry

    def changer() -> None:
        if p["call"]:
            munmap(oracle, proc, base, 2 * PGSIZE)
        else:
            mprotect(oracle, proc, base, 2 * PGSIZE, PROT_READ)

    ctx.machine.spawn(storer, core=1, name="store")
    ctx.machine.spawn(changer, core=0, name="munmap" if p["call"] else "mprotect")
    f.end_checks()


def mremap_race(ctx: RunContext, call: int, flush_dirty: bool, flush_in_lock: bool) -> None:
    """mremap moves a page of a shared mapping (MREMAP_FIXED) while another
    core still has a TLB entry for its old address.  call=0: that entry has
    D cached, a store goes through it, and fsync writes the page back (the
    race of 5d1904204c99).  call=1: the entry is clean, a load goes through
    it, and truncate frees the page (the race of eb66ae030829,
    CVE-2018-18281).  The switches are the MM's (kernel/mremap.py): both on
    in the kernel as it is; check/scenarios/known/tlb.py turns them off."""
    f = ShadowFile(ctx, 1)
    oracle = guard(ctx)
    proc = ctx.machine.process()
    proc.mremap_flush_dirty = flush_dirty
    proc.mremap_flush_in_lock = flush_in_lock
    prot = RW if call == 0 else PROT_READ
    base = f.map(proc, 1, prot, MAP_SHARED)
    target = base + 4 * PGSIZE

    def access() -> None:
        if call == 0:
            f.store(proc, base + SLOT)
        else:
            f.load(proc, base + SLOT)

    access()  # the set-up runs on core 0: core 0's TLB caches the entry (D for a store)

    def user() -> None:
        # Through that entry, or faulting once the page moved.  The shadow
        # keeps the old region, so an access that lands there is judged as
        # one to the file's page.
        with contextlib.suppress(SegmentationFault, BusError):
            access()

    def mover() -> None:
        oracle.allow(proc.pid, target, target + PGSIZE)
        got = proc.mremap(base, PGSIZE, PGSIZE, MREMAP_MAYMOVE | MREMAP_FIXED, target)
        oracle.forbid(proc.pid, base, base + PGSIZE, PROT_NONE, "mremap")
        f.regions.append(Region(proc, got, got + PGSIZE, 0, False))

    ctx.machine.spawn(user, core=0, name="store" if call == 0 else "load")
    ctx.machine.spawn(mover, core=1, name="mremap")
    if call == 0:
        ctx.machine.spawn(f.fsync, core=1, name="fsync")
    else:
        ctx.machine.spawn(f.truncate, 0, core=1, name="truncate")
    f.end_checks()


def reclaim_batch(ctx: RunContext, flush_first: bool) -> None:
    """Reclaim evicts a dirty page of a shared mapping with its flush
    deferred (TTU_BATCH_FLUSH), while mprotect makes the mapping read-only
    and a store on another core goes through its entry with D cached.
    mprotect finds the PTE reclaim cleared, changes nothing there, and must
    still flush what reclaim left pending before it returns (the race of
    3ea277194daa); the protection oracle judges the store.  `flush_first` is
    the Proc's switch (kernel/mm.py's flush_tlb_batched_pending)."""
    f = ShadowFile(ctx, 1)
    oracle = guard(ctx)
    proc = ctx.machine.process()
    proc.flush_batched_first = flush_first
    base = f.map(proc, 1, RW, MAP_SHARED)
    f.store(proc, base + SLOT)  # the set-up runs on core 0: its entry caches D
    # Reclaim's removal of its chosen victim, as Reclaim._round calls it (the
    # policy's choice and its look at the A bits left out: that look flushes).
    victim = {0: f.pm.tree.lookup(0)}

    def user() -> None:
        # Through the entry with D cached, or a fault once the PTE is gone.
        with contextlib.suppress(SegmentationFault):
            f.store(proc, base + SLOT)

    def reclaimer() -> None:
        f.pm.remove_pages(victim)

    ctx.machine.spawn(user, core=0, name="store")
    ctx.machine.spawn(reclaimer, core=1, name="reclaim")
    ctx.machine.spawn(mprotect, oracle, proc, base, PGSIZE, PROT_READ, core=1, name="mprotect")
    f.end_checks()


def _unmap_second(oracle: Protection, f: ShadowFile, proc: Proc, base: int) -> None:
    """munmap the second page of a two-page region, then load it: once munmap
    has returned the load must fault (the protection oracle judges it)."""
    munmap(oracle, proc, base + PGSIZE, PGSIZE)
    with contextlib.suppress(SegmentationFault):
        f.load(proc, base + PGSIZE)


def _munmap_mprotect(ctx: RunContext, p: Params) -> None:
    """munmap of a region's second page races mprotect of its first to
    read-only on another core: each splits the one region and writes the
    process's list of regions, munmap after registering the piece it keeps
    (a point: the page map's lock), so only vmr_lock keeps the two from
    building their lists from the same old one.  Once munmap returns, its
    page is gone (a load faults); once mprotect returns, its page is
    read-only (a store faults): the protection oracle judges both."""
    f = ShadowFile(ctx, 2)
    oracle = guard(ctx)
    proc = ctx.machine.process()
    base = f.map(proc, 2, RW, MAP_SHARED)

    def protector() -> None:
        mprotect(oracle, proc, base, PGSIZE, PROT_READ)
        with contextlib.suppress(SegmentationFault):
            f.store(proc, base)

    ctx.machine.spawn(_unmap_second, oracle, f, proc, base, core=0, name="munmap")
    ctx.machine.spawn(protector, core=1, name="mprotect")
    f.end_checks()


def _mlock_munmap(ctx: RunContext, p: Params) -> None:
    """mlock of a region's first page races munmap of its second: mlock
    finds the region, registers its pieces (a point: the page map's lock) and
    only then rebuilds the list without the region it found, so only
    vmr_lock keeps it from putting back the piece munmap took away.  Once
    munmap returns its page is gone (a load faults: the protection oracle);
    mlock's page stays mapped."""
    f = ShadowFile(ctx, 2)
    oracle = guard(ctx)
    proc = ctx.machine.process()
    base = f.map(proc, 2, RW, MAP_SHARED)

    ctx.machine.spawn(_unmap_second, oracle, f, proc, base, core=0, name="munmap")
    ctx.machine.spawn(proc.mlock, base, PGSIZE, core=1, name="mlock")
    f.end_checks()


def _mremap_msync(ctx: RunContext, p: Params) -> None:
    """msync of a page dirty through its PTE alone races mremap moving the
    page away, D bit and all (under pte_lock, with vmr_lock held).  msync
    finds the region and collects the D bit, or finds the range unmapped and
    fails with ENOMEM (no promise); once it returns, the store is durable.
    Only vmr_lock makes msync's look at the region and its look at the PTE
    one unit: without it, it could find the region and then no PTE."""
    f = ShadowFile(ctx, 1)
    proc = ctx.machine.process()
    base = f.map(proc, 1, RW, MAP_SHARED)
    target = base + 4 * PGSIZE
    f.store(proc, base)  # dirty through the PTE alone

    def mover() -> None:
        got = proc.mremap(base, PGSIZE, PGSIZE, MREMAP_MAYMOVE | MREMAP_FIXED, target)
        f.regions.append(Region(proc, got, got + PGSIZE, 0, False))

    def syncer() -> None:
        with contextlib.suppress(NotMapped):  # moved first: nothing mapped there
            f.msync(proc, base, PGSIZE)

    ctx.machine.spawn(mover, core=1, name="mremap")
    ctx.machine.spawn(syncer, core=1, name="msync")
    f.end_checks()


def _munmap_shootdown_remove(ctx: RunContext, p: Params) -> None:
    """munmap on core 1 zeroes a PTE whose D bit core 0's TLB also caches,
    and holds pte_lock while it shoots core 0 down and only then marks the
    page dirty; a remover of the page races it.  Removal looks at the PTE
    under pte_lock, so it never finds it zero while the D bit is in munmap's
    hands, and never frees the page clean: the store is durable."""
    f = ShadowFile(ctx, 1)
    proc = ctx.machine.process()
    base = f.map(proc, 1, RW, MAP_SHARED)
    f.store(proc, base)  # the set-up runs on core 0: its entry caches D

    def unmapper() -> None:
        proc.munmap(base, PGSIZE)
        f.unmapped(proc, base)

    def remover() -> None:
        f.pm.remove_contig(0, 1)
        f.no_stale_translation()

    ctx.machine.spawn(unmapper, core=1, name="munmap")
    ctx.machine.spawn(remover, core=1, name="remover")
    f.end_checks()


def _mprotect_exec_remove(ctx: RunContext, p: Params) -> None:
    """mprotect adding PROT_EXEC passes a dirty, writable PTE through
    not present and back under pte_lock (change_pte_range) while a remover
    evicts the page and core 0 stores to it.  Removal clears P under pte_lock
    too, so it never finds the PTE not present for that instant and skips it,
    to shoot down and then see it present again: no TLB entry outlives the
    frame, no store is lost."""
    f = ShadowFile(ctx, 1)
    proc = ctx.machine.process()
    base = f.map(proc, 1, RW, MAP_SHARED)
    f.store(proc, base)  # the set-up runs on core 0: its entry caches D

    def remover() -> None:
        f.pm.remove_contig(0, 1)
        f.no_stale_translation()

    ctx.machine.spawn(f.store, proc, base + SLOT, core=0, name="store")
    ctx.machine.spawn(proc.mprotect, base, PGSIZE, RW | PROT_EXEC, core=1, name="mprotect")
    ctx.machine.spawn(remover, core=1, name="remover")
    f.end_checks()


def _reclaim_batch(ctx: RunContext, p: Params) -> None:
    reclaim_batch(ctx, True)


def _mremap_race(ctx: RunContext, p: Params) -> None:
    mremap_race(ctx, p["call"], True, True)


SCENARIOS = (
    Scenario(
        "tlb-range",
        "mprotect (call=0) or munmap (call=1) of two pages flushes their range before it "
        "returns, racing stores through another core's entries in and past it",
        _tlb_range,
        {"call": 0},
        limits={"call": (0, 1)},
    ),
    Scenario(
        "munmap-mprotect",
        "munmap of a region's second page races mprotect of its first: no page stays "
        "mapped past munmap, or writable past mprotect",
        _munmap_mprotect,
    ),
    Scenario(
        "mlock-munmap",
        "mlock of a region's first page races munmap of its second: no page stays "
        "mapped past munmap",
        _mlock_munmap,
    ),
    Scenario(
        "mremap-msync",
        "msync of a page dirty through its PTE races mremap moving it away: what msync "
        "returns after is durable",
        _mremap_msync,
        dirty_tracking="dbit",  # the PTE's D bit is the store's only trace
    ),
    Scenario(
        "munmap-shootdown-remove",
        "munmap zeroes a PTE another core's TLB caches dirty and shoots it down while "
        "removal evicts the page: the D bit reaches the file",
        _munmap_shootdown_remove,
        dirty_tracking="dbit",  # the PTE's D bit is the store's only trace
    ),
    Scenario(
        "mprotect-exec-remove",
        "mprotect to RW|EXEC holds a dirty PTE not present for an instant while removal "
        "evicts its page and another core stores to it",
        _mprotect_exec_remove,
        dirty_tracking="dbit",  # the PTE's D bit is the store's only trace
    ),
    Scenario(
        "reclaim-batch",
        "reclaim clears a dirty PTE and defers its flush while mprotect makes the page "
        "read-only and another core stores through its entry",
        _reclaim_batch,
        dirty_tracking="dbit",  # the stale entry must be writable and dirty from the start
    ),
    Scenario(
        "mremap-race",
        "mremap moves a page while another core's TLB entry for its old address is used: "
        "a store and fsync (call=0), or a load and truncate (call=1)",
        _mremap_race,
        {"call": 0},
        limits={"call": (0, 1)},
        dirty_tracking="dbit",  # the moved PTE's D bit is the store's only trace
    ),
)
