"""Mapping scenarios: removal racing processes that map the file.

Each runs on a real host file (check/shadow.py) mapped into one or two
processes; the access hook checks memory safety as every load and store
lands, and coherence as every load returns; at the end the processes exit,
the file is fsynced and must equal the shadow, and every frame must be free.
A remover also checks, as remove_contig returns, that no PTE or TLB entry
names a frame it freed.
"""

from __future__ import annotations

import contextlib

from pagemap.check.context import RunContext
from pagemap.check.scenario import Params, Scenario
from pagemap.check.shadow import SLOT, Region, ShadowFile
from pagemap.hw.memory import PGSIZE
from pagemap.kernel.errors import SegmentationFault
from pagemap.kernel.mman import MAP_FIXED, MAP_LOCKED, MAP_PRIVATE, MAP_SHARED, PROT_READ
from pagemap.kernel.mman import PROT_RW as RW
from pagemap.oracles import ACCOUNTING, DURABILITY


def _remover(ctx: RunContext, f: ShadowFile, lo: int, n: int) -> None:
    def remover() -> None:
        f.pm.remove_contig(lo, n)
        f.no_stale_translation()

    ctx.machine.spawn(remover, name="remover")


def _store_remove(ctx: RunContext, p: Params) -> None:
    pages = p["pages"]
    f = ShadowFile(ctx, pages)
    proc = ctx.machine.process()
    base = f.map(proc, pages, RW, MAP_SHARED)

    def writer() -> None:
        # The second store to a page goes through a TLB entry whose D is set:
        # the case removal must shoot down before it reads D bits.
        for _ in range(p["rounds"]):
            for i in range(pages):
                f.store(proc, base + i * PGSIZE)
        f.load(proc, base)

    ctx.machine.spawn(writer, name="writer")
    _remover(ctx, f, 0, pages)
    f.end_checks()


def _fault_remove(ctx: RunContext, p: Params) -> None:
    f = ShadowFile(ctx, 1)
    mapped, faulting = ctx.machine.process(), ctx.machine.process()
    base_m = f.map(mapped, 1, PROT_READ, MAP_SHARED)
    base_f = f.map(faulting, 1, PROT_READ, MAP_SHARED)
    f.load(mapped, base_m)  # mapped before the race: removal must unmap it

    def reader() -> None:
        f.load(faulting, base_f + SLOT)  # a fault, racing the removal of its page
        f.load(faulting, base_f)

    ctx.machine.spawn(reader, name="reader")
    _remover(ctx, f, 0, 1)
    f.end_checks()


def _mprotect_remove(ctx: RunContext, p: Params) -> None:
    f = ShadowFile(ctx, 1)
    proc = ctx.machine.process()
    base = f.map(proc, 1, RW, MAP_SHARED)

    def writer() -> None:
        f.store(proc, base)
        proc.mprotect(base, PGSIZE, PROT_READ)  # must not drop the D bit
        f.load(proc, base)

    ctx.machine.spawn(writer, name="writer")
    _remover(ctx, f, 0, 1)
    f.end_checks()


def _munmap_remove(ctx: RunContext, p: Params) -> None:
    f = ShadowFile(ctx, 2)
    proc = ctx.machine.process()
    base = f.map(proc, 2, RW, MAP_SHARED)

    def writer() -> None:
        f.store(proc, base)
        f.store(proc, base + PGSIZE)
        proc.munmap(base, PGSIZE)  # must pass page 0's D bit on
        f.unmapped(proc, base)
        f.load(proc, base + PGSIZE)

    ctx.machine.spawn(writer, name="writer")
    _remover(ctx, f, 0, 2)
    f.end_checks()


def _msync_store(ctx: RunContext, p: Params) -> None:
    f = ShadowFile(ctx, 1)
    proc = ctx.machine.process()
    base = f.map(proc, 1, RW, MAP_SHARED)

    def writer() -> None:
        f.store(proc, base)
        f.store(proc, base)

    def syncer() -> None:
        proc.msync(base, PGSIZE)

    ctx.machine.spawn(writer, name="writer")
    ctx.machine.spawn(syncer, name="msync")
    f.end_checks()


def _private_remove(ctx: RunContext, p: Params) -> None:
    f = ShadowFile(ctx, 1)
    mine, theirs = ctx.machine.process(), ctx.machine.process()
    priv = f.map(mine, 1, RW, MAP_PRIVATE)
    shared = f.map(theirs, 1, RW, MAP_SHARED)

    f.store(theirs, shared)  # dirty in a shared mapping before the race

    def private_writer() -> None:
        f.load(mine, priv)  # sees the shared store: not copied yet
        f.store(mine, priv + SLOT)  # a private copy: never reaches the file
        f.load(mine, priv + SLOT)

    ctx.machine.spawn(private_writer, name="private")
    _remover(ctx, f, 0, 1)
    f.end_checks()


def _locked_remove(ctx: RunContext, p: Params) -> None:
    f = ShadowFile(ctx, 2)
    proc = ctx.machine.process()
    locked = f.map(proc, 1, RW, MAP_SHARED | MAP_LOCKED)  # page 0, pinned
    loose = f.map(proc, 1, RW, MAP_SHARED, first=1)  # page 1

    def writer() -> None:
        f.store(proc, locked)
        f.store(proc, loose)
        f.load(proc, locked)

    def remover() -> None:
        f.pm.remove_contig(0, 2)
        f.no_stale_translation()
        slot = f.pm.tree.lookup_slot(0)
        if slot is None or not slot.value:
            ctx.fail(ACCOUNTING, "removal freed page 0, which a MAP_LOCKED region maps")

    ctx.machine.spawn(writer, name="writer")
    ctx.machine.spawn(remover, name="remover")
    f.end_checks()


def _offsets_remove(ctx: RunContext, p: Params) -> None:
    f = ShadowFile(ctx, 3)
    a, b = ctx.machine.process(), ctx.machine.process()
    base_a = f.map(a, 2, RW, MAP_SHARED, first=1)  # pages 1-2: not the range's first page
    base_b = f.map(b, 2, RW, MAP_SHARED, first=0)  # pages 0-1

    f.store(b, base_b + PGSIZE)  # page 1 dirtied through b's PTE only
    f.store(b, base_b)  # page 0

    def writer_a() -> None:
        f.store(a, base_a + PGSIZE + SLOT)  # page 2
        f.load(a, base_a)  # page 1, slot 0: b's store

    ctx.machine.spawn(writer_a, name="proc-a")
    _remover(ctx, f, 0, 3)
    f.end_checks()


def _reclaim_store(ctx: RunContext, p: Params) -> None:
    # Two usable frames, both holding mapped pages; a read of a third page
    # finds no free frame and reclaims in its own task, racing a store (and,
    # with remover=1, a user's remove_contig of the whole file).
    f = ShadowFile(ctx, 3)
    proc = ctx.machine.process()
    base = f.map(proc, 3, RW, MAP_SHARED)
    f.load(proc, base)
    f.load(proc, base + PGSIZE)

    def storer() -> None:
        f.store(proc, base + SLOT)  # page 0, through the mapping
        f.load(proc, base + PGSIZE)  # page 1: may fault back in

    def reader() -> None:
        f.pread(2 * PGSIZE)  # page 2: direct reclaim

    ctx.machine.spawn(storer, name="storer")
    ctx.machine.spawn(reader, name="reader")
    if p["remover"]:
        _remover(ctx, f, 0, 3)
    f.end_checks()


def _fault_fault(ctx: RunContext, p: Params) -> None:
    f = ShadowFile(ctx, 1)
    proc = ctx.machine.process()
    base = f.map(proc, 1, RW, MAP_SHARED)

    def storer() -> None:
        f.store(proc, base)  # a fault, then D set through the PTE it installed

    def loader() -> None:
        f.load(proc, base + SLOT)  # a fault of its own on the same page, racing

    ctx.machine.spawn(storer, name="store")
    ctx.machine.spawn(loader, name="load")
    f.end_checks()


def _munmap_fault(ctx: RunContext, p: Params) -> None:
    f = ShadowFile(ctx, 1)
    proc = ctx.machine.process()
    base = f.map(proc, 1, RW, MAP_SHARED)

    def loader() -> None:
        with contextlib.suppress(SegmentationFault):  # unmapped first: a fault it may not serve
            f.load(proc, base)

    def unmapper() -> None:
        proc.munmap(base, PGSIZE)
        f.unmapped(proc, base)

    ctx.machine.spawn(loader, name="load")
    ctx.machine.spawn(unmapper, name="munmap")
    f.end_checks()


def _msync_remove(ctx: RunContext, p: Params) -> None:
    # msync writes back the pages of its range while a remover evicts them:
    # msync harvests the D bits and writes the pages with the map lock
    # dropped, removal unmaps, gathers the same D bits and writes the same
    # pages.  Whichever takes a D bit, its store reaches the file; once msync
    # returns, what was stored before it began is in the file; no PTE or TLB
    # entry outlives the frame removal frees.
    f = ShadowFile(ctx, 2)
    proc = ctx.machine.process()
    base = f.map(proc, 2, RW, MAP_SHARED)
    f.store(proc, base)  # dirty through the PTE only, before the race
    f.store(proc, base + PGSIZE)

    def syncer() -> None:
        proc.msync(base, 2 * PGSIZE)
        for i in range(2):
            want, got = f.shadow.expect(i * PGSIZE, SLOT), f.backing(i)[:SLOT]
            if got != want:
                ctx.fail(
                    DURABILITY,
                    f"msync returned, yet page {i} of the file holds {got.hex()} at slot 0, "
                    f"not {want.hex()}, stored through the mapping before msync began",
                )
        f.store(proc, base + SLOT)  # page 0 again: refaulted if removal took it

    ctx.machine.spawn(syncer, name="msync")
    _remover(ctx, f, 0, 2)
    f.end_checks()


def _fixed_remap_store(ctx: RunContext, p: Params) -> None:
    # MAP_FIXED maps page 1 of the file again over page 1 of a shared mapping
    # of pages 0-1, while another core stores to both pages.  The kernel
    # unmaps the old page 1 (splitting the region, zapping the PTE, passing
    # its D bit on) and maps the new region beside what is left of the old
    # (not merged with it: the new region's flags keep MAP_FIXED).
    # A store lands through the old PTE before the zap, or faults and finds
    # the new region: either way the same file page, so the shadow's region
    # stays true throughout.  No D bit may be dropped by the zap, no fault
    # that began in the old region may install into it once it is gone, and
    # no translation may outlive the unmap.
    f = ShadowFile(ctx, 2)
    proc = ctx.machine.process()
    base = f.map(proc, 2, RW, MAP_SHARED)
    f.store(proc, base + PGSIZE)  # page 1 mapped and dirty in its PTE before the race

    def storer() -> None:
        f.store(proc, base + PGSIZE + SLOT)  # through the old PTE, or a fault in the new region
        f.store(proc, base)  # page 0: the region split and merged around it
        f.load(proc, base + PGSIZE)

    def remapper() -> None:
        got = proc.mmap(
            PGSIZE, RW, MAP_SHARED | MAP_FIXED, file=f.file, offset=PGSIZE, addr=base + PGSIZE
        )
        if got != base + PGSIZE:
            ctx.fail(ACCOUNTING, f"MAP_FIXED at {base + PGSIZE:#x} mapped at {got:#x}")
        f.load(proc, base + PGSIZE + 2 * SLOT)

    ctx.machine.spawn(storer, name="store")
    ctx.machine.spawn(remapper, name="map-fixed")
    f.end_checks()


def _merge_fault_remove(ctx: RunContext, p: Params) -> None:
    # Pages 0 and 1 of the file are mapped by two mmaps side by side, the
    # second made in the race: its region joins the first (same file,
    # consecutive offsets, same protection), registering the joined region
    # on the page map before the two it replaces leave it.  Meanwhile the
    # other core faults on page 0 (looking its region up around the merge)
    # and then evicts both pages, finding their PTEs through whichever
    # region is on the map.  Nothing may be left mapped where removal freed,
    # no store lost.
    f = ShadowFile(ctx, 2)
    proc = ctx.machine.process()
    base = f.map(proc, 2, RW, MAP_SHARED)
    proc.munmap(base + PGSIZE, PGSIZE)  # room for the second mmap, right after the first
    f.unmapped(proc, base)
    f.regions.append(Region(proc, base, base + PGSIZE, 0, False))

    def mapper() -> None:
        got = proc.mmap(PGSIZE, RW, MAP_SHARED, file=f.file, offset=PGSIZE, addr=base + PGSIZE)
        f.regions.append(Region(proc, got, got + PGSIZE, PGSIZE, False))
        f.store(proc, got)  # page 1, through the joined region

    def fault_and_remove() -> None:
        f.store(proc, base + SLOT)  # page 0: a fault, around the merge
        f.pm.remove_contig(0, 2)
        f.no_stale_translation()

    ctx.machine.spawn(mapper, name="mmap-merge")
    ctx.machine.spawn(fault_and_remove, name="fault-remove")
    f.end_checks()


def _alias_remove(ctx: RunContext, p: Params) -> None:
    # One process maps page 0 of the file twice, at two addresses (two
    # regions, two PTEs, one page), and stores through both while a remover
    # evicts the page.  Removal must unmap both PTEs and gather both D bits
    # before it writes the page and frees its frame: a store through either
    # alias reaches the file, none lands in a free frame, and each is seen
    # through the other alias.
    f = ShadowFile(ctx, 1)
    proc = ctx.machine.process()
    one = f.map(proc, 1, RW, MAP_SHARED)
    two = f.map(proc, 1, RW, MAP_SHARED)
    f.load(proc, one)  # both PTEs in place before the race
    f.load(proc, two)

    def writer() -> None:
        f.store(proc, one + SLOT)
        f.store(proc, two + 2 * SLOT)
        f.load(proc, two + SLOT)  # each store, seen through the other alias
        f.load(proc, one + 2 * SLOT)

    ctx.machine.spawn(writer, name="store-both")
    _remover(ctx, f, 0, 1)
    f.end_checks()


SCENARIOS = (
    Scenario(
        "store-remove",
        "stores to a shared mapping, the second through a dirty TLB entry, race removal",
        _store_remove,
        {"pages": 1, "rounds": 2},
        frames=lambda p: p["pages"] + 6,
        limits={"pages": (1, 8), "rounds": (1, 8)},
    ),
    Scenario(
        "fault-remove",
        "a process faults on a page while it is removed from another process's mapping",
        _fault_remove,
    ),
    Scenario(
        "mprotect-remove",
        "a store, then mprotect to read-only, racing removal: no D bit dropped",
        _mprotect_remove,
    ),
    Scenario(
        "munmap-remove",
        "stores, then munmap of one page, racing removal: no D bit dropped",
        _munmap_remove,
    ),
    Scenario(
        "msync-store",
        "msync races stores to a shared mapping",
        _msync_store,
    ),
    Scenario(
        "private-remove",
        "a private (copy-on-write) mapping of a page dirty in a shared one races removal",
        _private_remove,
    ),
    Scenario(
        "locked-remove",
        "a MAP_LOCKED page is never removed; its unlocked neighbour may be",
        _locked_remove,
    ),
    Scenario(
        "offsets-remove",
        "two processes map the file at different offsets; removal covers both",
        _offsets_remove,
    ),
    Scenario(
        "reclaim-store",
        "an allocation reclaims a mapped page (harvesting its A bit, shooting down, "
        "writing back) while a store dirties it and, optionally, a remover evicts the file",
        _reclaim_store,
        {"remover": 0},
        cores=3,
        frames=3,
        limits={"remover": (0, 1)},
    ),
    Scenario(
        "fault-fault",
        "two cores of one process fault on one page, one to store: no D bit overwritten",
        _fault_fault,
    ),
    Scenario(
        "munmap-fault",
        "munmap races a fault on its region: no PTE is left where nothing is mapped",
        _munmap_fault,
    ),
    Scenario(
        "msync-remove",
        "msync writes back the pages a remover evicts; a store after it refaults",
        _msync_remove,
    ),
    Scenario(
        "fixed-remap-store",
        "MAP_FIXED maps a file page again over its own shared mapping while a core stores to it",
        _fixed_remap_store,
    ),
    Scenario(
        "merge-fault-remove",
        "a second mmap joins the file region beside it while a fault and a remover race the merge",
        _merge_fault_remove,
    ),
    Scenario(
        "alias-remove",
        "one page mapped at two addresses of one process; stores through both race removal",
        _alias_remove,
    ),
)
