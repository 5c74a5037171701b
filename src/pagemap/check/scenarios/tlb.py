"""TLB scenarios (issue 21): ranged flushes, and the protection oracle.

Each runs a small file (check/shadow.py) mapped into one process, a task on
a second core storing through TLB entries it cached itself, and a task
calling what must flush them.  Besides the shadow's oracles (memory safety,
coherence, durability at the end), `guard` installs the protection oracle
(oracles/protection.py): after a call that took access away returns, no
access it forbids may land, which a flush of too small a range lets through
even when nothing is lost.
"""

from __future__ import annotations

import contextlib

from pagemap.check.context import RunContext
from pagemap.check.scenario import Params, Scenario
from pagemap.check.shadow import ShadowFile
from pagemap.hw.memory import PGSIZE
from pagemap.kernel.errors import SegmentationFault
from pagemap.kernel.mman import MAP_SHARED, PROT_NONE, PROT_READ
from pagemap.kernel.mman import PROT_RW as RW
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


SCENARIOS = (
    Scenario(
        "tlb-range",
        "mprotect (call=0) or munmap (call=1) of two pages flushes their range before it "
        "returns, racing stores through another core's entries in and past it",
        _tlb_range,
        {"call": 0},
        limits={"call": (0, 1)},
    ),
)
