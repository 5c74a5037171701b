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
from pagemap.check.shadow import SLOT, ShadowFile
from pagemap.hw.memory import PGSIZE
from pagemap.kernel.errors import SegmentationFault
from pagemap.kernel.mman import MAP_LOCKED, MAP_PRIVATE, MAP_SHARED, PROT_READ
from pagemap.kernel.mman import PROT_RW as RW
from pagemap.oracles import ACCOUNTING


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
)
