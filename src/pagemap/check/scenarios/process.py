"""Process scenarios: a process's own memory racing itself and the file under it.

The mapping scenarios race removal; these race the rest of a process's life:
two cores of one process faulting on one anonymous or private page, MAP_FIXED
and mprotect under a fault, truncate dropping the private copies another core
is using, MAP_LOCKED population racing truncate, and fsync collecting the D
bits of a store in flight.  Anonymous memory has no shadow file, so each task
checks its own slot (one writer a slot) and the access hook checks memory
safety as each access lands; at the end the processes exit and no frame may
be left behind.  `pagemap check --coverage` shows what these reach.
"""

from __future__ import annotations

import contextlib

from pagemap.check.context import RunContext
from pagemap.check.scenario import Params, Scenario
from pagemap.check.shadow import SLOT, Region, ShadowFile
from pagemap.hw.memory import PGSIZE
from pagemap.kernel.errors import BusError, SegmentationFault
from pagemap.kernel.mman import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_LOCKED,
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_NONE,
    PROT_READ,
)
from pagemap.kernel.mman import PROT_RW as RW
from pagemap.kernel.proc import Proc
from pagemap.oracles import COHERENCE, DURABILITY, MEMORY_SAFETY, Violation
from pagemap.oracles.accounting import no_leak, quiescent


def _stamp(who: int, n: int) -> bytes:
    return (who << 32 | n).to_bytes(SLOT, "little")


def _own_slot(ctx: RunContext, proc: Proc, va: int, want: bytes) -> None:
    """Load the slot at `va`, which only this task writes: it holds `want`."""
    got = proc.load(va, SLOT)
    if got != want:
        ctx.fail(
            COHERENCE,
            f"{ctx.who()} loaded {got.hex()} at {va:#x} (p{proc.pid}), "
            f"not {want.hex()}, its own last store",
        )


def _anon_fault_remap(ctx: RunContext, p: Params) -> None:
    # Both cores fault on page 0 at once: one fault's zeroed page loses and is
    # freed, and both stores must land in the page that won.  Then MAP_FIXED
    # replaces page 1's region while the other core faults on it: that fault's
    # page must not be installed into the region that is gone, nor leak.
    proc = ctx.machine.process()
    base = proc.mmap(2 * PGSIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS)

    def first() -> None:
        proc.store(base, _stamp(1, 1))
        proc.store(base + PGSIZE, _stamp(1, 2))  # into the old region or the new
        _own_slot(ctx, proc, base, _stamp(1, 1))

    def second() -> None:
        proc.store(base + SLOT, _stamp(2, 1))
        proc.mmap(PGSIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, addr=base + PGSIZE)
        _own_slot(ctx, proc, base + SLOT, _stamp(2, 1))

    ctx.machine.spawn(first, name="core-a")
    ctx.machine.spawn(second, name="core-b")
    end_anonymous(ctx)


def _anon_mprotect(ctx: RunContext, p: Params) -> None:
    # A store faults on an anonymous page of ours that mprotect made read-only
    # (its copy is kept, never replaced by a zeroed one); the region is split
    # and merged again around it, and a load crosses the two pages.
    proc = ctx.machine.process()
    base = proc.mmap(2 * PGSIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    proc.store(base, _stamp(1, 1))
    proc.store(base + PGSIZE, _stamp(1, 2))

    def storer() -> None:
        with contextlib.suppress(SegmentationFault):  # read-only for a moment
            proc.store(base + SLOT, _stamp(2, 1))
        _own_slot(ctx, proc, base, _stamp(1, 1))

    def protector() -> None:
        proc.mprotect(base, PGSIZE, PROT_READ)
        proc.mprotect(base, PGSIZE, RW)
        both = proc.load(base + PGSIZE - SLOT, 2 * SLOT)  # the last slot of 0, the first of 1
        if both[SLOT:] != _stamp(1, 2):
            ctx.fail(COHERENCE, f"a load across two pages read {both[SLOT:].hex()} from page 1")

    ctx.machine.spawn(storer, name="store")
    ctx.machine.spawn(protector, name="mprotect")
    end_anonymous(ctx)


def _private_fault_fault(ctx: RunContext, p: Params) -> None:
    # Two cores store to one page of a private file mapping: each fault makes
    # a copy, one copy must win, and neither store may land in the loser.
    f = ShadowFile(ctx, 1)
    proc = ctx.machine.process()
    base = f.map(proc, 1, RW, MAP_PRIVATE)

    def writer(slot: int) -> None:
        f.store(proc, base + slot * SLOT)
        f.load(proc, base + slot * SLOT)

    ctx.machine.spawn(writer, 0, name="core-a")
    ctx.machine.spawn(writer, 1, name="core-b")
    f.end_checks()


def _private_protect(ctx: RunContext, p: Params) -> None:
    # PROT_NONE zaps the PTE of our private copy but keeps the copy: the fault
    # after mprotect(RW) must map that copy again, not the file's page.
    f = ShadowFile(ctx, 1)
    proc = ctx.machine.process()
    base = f.map(proc, 1, RW, MAP_PRIVATE)
    f.store(proc, base)  # our copy, before the race

    def user() -> None:
        with contextlib.suppress(SegmentationFault):  # PROT_NONE for a moment
            f.store(proc, base + SLOT)
        with contextlib.suppress(SegmentationFault):
            f.load(proc, base)

    def protector() -> None:
        proc.mprotect(base, PGSIZE, PROT_NONE)
        proc.mprotect(base, PGSIZE, RW)
        f.load(proc, base)

    ctx.machine.spawn(user, name="user")
    ctx.machine.spawn(protector, name="mprotect")
    f.end_checks()


def _truncate_private(ctx: RunContext, p: Params) -> None:
    # Truncate drops the private copies past the new end, as Linux does, while
    # another core makes one: afterwards no access there may succeed.
    f = ShadowFile(ctx, 2)
    proc = ctx.machine.process()
    base = f.map(proc, 2, RW, MAP_PRIVATE)
    f.load(proc, base + PGSIZE)  # page 1 mapped (the file's page) before the race

    def user() -> None:
        with contextlib.suppress(BusError):  # truncated first: a bus error
            f.store(proc, base + PGSIZE)  # a private copy of page 1

    def truncater() -> None:
        f.truncate(PGSIZE)
        try:
            got = proc.load(base + PGSIZE, SLOT)
        except BusError:
            return
        ctx.fail(
            COHERENCE,
            f"a load past the end of a truncated file returned {got.hex()}: "
            "a private copy survived truncate",
        )

    ctx.machine.spawn(user, name="user")
    ctx.machine.spawn(truncater, name="truncate")
    f.end_checks()


def _locked_truncate(ctx: RunContext, p: Params) -> None:
    # MAP_LOCKED faults its pages in as mmap returns, up to the end of the file,
    # while the file shrinks: population stops at the new end, quietly.
    f = ShadowFile(ctx, 2)
    proc = ctx.machine.process()

    def locker() -> None:
        base = f.map(proc, 2, RW, MAP_SHARED | MAP_LOCKED)
        f.store(proc, base)

    def truncater() -> None:
        f.truncate(PGSIZE)

    ctx.machine.spawn(locker, name="mmap-locked")
    ctx.machine.spawn(truncater, name="truncate")
    f.end_checks()


def _fsync_store(ctx: RunContext, p: Params) -> None:
    # fsync moves the D bits of shared mappings to the pages before writing
    # them back; a store racing it is written by this fsync or left dirty for
    # the next, never dropped.
    f = ShadowFile(ctx, 2)
    proc = ctx.machine.process()
    base = f.map(proc, 2, RW, MAP_SHARED)
    f.store(proc, base)  # dirty through the PTE only

    def writer() -> None:
        f.store(proc, base + PGSIZE)
        f.store(proc, base + SLOT)

    def syncer() -> None:
        f.file.fsync()
        # Slot 0 was stored before fsync began and nobody writes it again.
        want, got = f.shadow.expect(0, SLOT), f.backing(0)[:SLOT]
        if got != want:
            ctx.fail(
                DURABILITY,
                f"fsync returned, yet the file holds {got.hex()} at offset 0, not "
                f"{want.hex()}, stored through a mapping before fsync began",
            )

    ctx.machine.spawn(writer, name="writer")
    ctx.machine.spawn(syncer, name="fsync")
    f.end_checks()


def _mprotect_store(ctx: RunContext, p: Params) -> None:
    # One core stores to a page of a shared file mapping, twice (the second
    # through a TLB entry with D set), while another core of the same process
    # makes the page read-only.  mprotect clears W and D in the PTE and shoots
    # down every core's TLB: a store lands before that (its D bit is passed
    # to the page, not dropped) or faults with SIGSEGV after; once mprotect
    # has returned, no store may land through a writable entry left cached
    # on the storing core.
    f = ShadowFile(ctx, 1)
    proc = ctx.machine.process()
    base = f.map(proc, 1, RW, MAP_SHARED)
    f.load(proc, base)  # mapped (clean) before the race
    done = [False]  # mprotect returned: set in the step it returns in
    hook = ctx.machine.on_access

    def on_access(owner: object, va: int, ppn: int, write: bool) -> None:
        if write and done[0] and owner is proc and base <= va < base + PGSIZE:
            ctx.fail(
                MEMORY_SAFETY,
                f"{ctx.who()} stored at {va:#x} after mprotect(PROT_READ) of it returned "
                "(a writable translation outlived mprotect)",
            )
        if hook is not None:
            hook(owner, va, ppn, write)

    ctx.machine.on_access = on_access

    def storer() -> None:
        for _ in range(p["rounds"]):
            with contextlib.suppress(SegmentationFault):  # read-only by now
                f.store(proc, base + SLOT)
        f.load(proc, base + SLOT)

    def protector() -> None:
        proc.mprotect(base, PGSIZE, PROT_READ)
        done[0] = True
        f.load(proc, base + SLOT)

    ctx.machine.spawn(storer, name="store")
    ctx.machine.spawn(protector, name="mprotect")
    f.end_checks()


def _truncate_vm(ctx: RunContext, p: Params) -> None:
    # truncate cuts the file to one page while the process changes its
    # mappings of the page cut off: mprotect of it to read-only, munmap of
    # it, then a new mmap of the whole file and a load past the new end.
    # truncate unmaps page 1 from every region on the page map while regions
    # are split (mprotect), taken off the map (munmap) and added (mmap): a
    # PTE left for the dropped page, in a region being split or made, is a
    # translation to a freed frame; a load past the end after truncate
    # returned is a bus error, never bytes.
    f = ShadowFile(ctx, 2)
    proc = ctx.machine.process()
    base = f.map(proc, 2, RW, MAP_SHARED)
    f.store(proc, base + PGSIZE)  # page 1 mapped and dirty before the race
    cut = [False]

    def vm() -> None:
        proc.mprotect(base + PGSIZE, PGSIZE, PROT_READ)
        with contextlib.suppress(BusError):  # gone already: a bus error
            f.load(proc, base + PGSIZE)
        proc.munmap(base + PGSIZE, PGSIZE)
        f.unmapped(proc, base)
        f.regions.append(Region(proc, base, base + PGSIZE, 0, False))
        again = f.map(proc, 2, RW, MAP_SHARED)
        try:
            f.load(proc, again + PGSIZE)
        except BusError:
            return
        if cut[0]:
            ctx.fail(COHERENCE, "a load past the end of a truncated file returned bytes")

    def truncater() -> None:
        f.truncate(PGSIZE)
        cut[0] = True
        f.no_stale_translation()

    ctx.machine.spawn(vm, name="mprotect-munmap-mmap")
    ctx.machine.spawn(truncater, name="truncate")
    f.end_checks()


def end_anonymous(ctx: RunContext) -> None:
    """Anonymous memory: exit the processes, then nothing may be left behind
    (the end checks of every scenario whose pages no file owns: here, cow.py
    and the zoo's known/cow.py)."""

    def exit_all() -> list[Violation]:
        for proc in ctx.machine.procs:
            proc.exit()
        return []

    ctx.at_end(lambda: quiescent(ctx.machine))
    ctx.at_end(exit_all)
    ctx.at_end(lambda: no_leak(ctx.machine))


SCENARIOS = (
    Scenario(
        "anon-fault-remap",
        "two cores fault on one anonymous page; MAP_FIXED replaces another under a fault",
        _anon_fault_remap,
    ),
    Scenario(
        "anon-mprotect",
        "a store faults on an anonymous page mprotect made read-only, split and merged",
        _anon_mprotect,
    ),
    Scenario(
        "private-fault-fault",
        "two cores store to one page of a private file mapping: one copy wins",
        _private_fault_fault,
    ),
    Scenario(
        "private-protect",
        "PROT_NONE and back over a private copy, racing stores to it",
        _private_protect,
    ),
    Scenario(
        "truncate-private",
        "truncate drops private copies past the end while a core makes one",
        _truncate_private,
    ),
    Scenario(
        "locked-truncate",
        "MAP_LOCKED population races truncate: it stops at the new end",
        _locked_truncate,
    ),
    Scenario(
        "fsync-store",
        "fsync collects the D bits of shared mappings while stores race it",
        _fsync_store,
    ),
    Scenario(
        "mprotect-store",
        "a store on one core races mprotect to read-only on another: no D bit dropped, "
        "no store through a writable TLB entry once mprotect returns",
        _mprotect_store,
        {"rounds": 2},
        limits={"rounds": (1, 4)},
    ),
    Scenario(
        "truncate-vm",
        "truncate races mprotect, munmap and mmap of the range it cuts off",
        _truncate_vm,
    ),
)
