"""Hole-punching scenarios: pages added to the cache while a hole is punched
(kernel/fallocate.py, kernel/invalidate.py).

- punch-fault, punch-read: a fault or a pread brings the page in as the hole
  is punched under it.
- punch-mremap: a fault maps a page the punch drops while it is held, and
  mremap moves that PTE.  The punch's last unmap of a held page
  (TruncatePages._drop_held) walks the regions under the map lock, which
  mremap's new region must take to join the list before the PTE moves in:
  without it (the lock mutant
  kernel/truncate_pages.py:TruncatePages._drop_held:self.lock) the walk
  copies the list before the new region joins and finds the old address
  empty once the PTE moved, so the page leaves the map still mapped at the
  new address and its frame is freed under it; the memory-safety oracle
  judges the load through it at the end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from pagemap.check.context import RunContext
from pagemap.check.scenario import Params, Scenario
from pagemap.check.shadow import SLOT, Region, ShadowFile
from pagemap.hw.memory import PGSIZE
from pagemap.kernel.errors import SegmentationFault
from pagemap.kernel.fallocate import PUNCH
from pagemap.kernel.mman import MAP_SHARED, PROT_READ
from pagemap.kernel.mman import PROT_RW as RW
from pagemap.kernel.mremap import MREMAP_FIXED, MREMAP_MAYMOVE
from pagemap.oracles import COHERENCE, Violation
from pagemap.oracles.coherence import mismatch

_ZEROS = bytes(PGSIZE)


def punch_race(ctx: RunContext, readers: tuple[str, ...], fix: bool = True) -> None:
    """Page 1 of a two-page host file is punched while tasks bring it into
    the cache: "fault" through a shared mapping, "read" with pread, each a
    task of that name.  Once all are done, every way of reading page 1 must
    give zeros: the cache may not hold the bytes of the blocks the punch
    freed.  `fix` False turns the invalidate lock off (the zoo's rows)."""
    f = ShadowFile(ctx, 2, host=True)
    f.pm.invalidate_lock.enabled = fix
    proc = ctx.machine.process()
    base = f.map(proc, 2, PROT_READ, MAP_SHARED)  # mapped, not yet faulted in

    def fault() -> None:
        proc.load(base + PGSIZE, 8)  # the bytes are judged at the end

    def read() -> None:
        f.file.pread(8, PGSIZE)

    def punch() -> None:
        f.file.fallocate(PUNCH, PGSIZE, PGSIZE)

    def punched() -> list[Violation]:
        f.shadow.write(PGSIZE, _ZEROS)  # what the file holds now
        for how, got in (
            ("pread", f.file.pread(PGSIZE, PGSIZE)),
            ("a load through the mapping", proc.load(base + PGSIZE, PGSIZE)),
        ):
            problem = mismatch(f"{how} after the punch", PGSIZE, got, _ZEROS)
            if problem is not None:
                return [Violation(COHERENCE, problem.removeprefix("coherence: "))]
        return []

    tasks: dict[str, Callable[[], None]] = {"fault": fault, "read": read}
    for core, name in enumerate(readers):
        ctx.machine.spawn(tasks[name], core=core % 2, name=name)
    ctx.machine.spawn(punch, core=1, name="punch")
    ctx.at_end(punched)
    f.end_checks()


def _punch_fault(ctx: RunContext, p: Params) -> None:
    # A fault of a page not cached races a hole punched over it: the
    # invalidate lock keeps it from reading the page back in between the drop
    # and the host's punch, and a fault that held the page as it was dropped
    # installs nothing (Removal._drop_held, FaultHandler._left_map).
    punch_race(ctx, ("fault",))


def _punch_read(ctx: RunContext, p: Params) -> None:
    # The same with a pread, which adds the page through the VFS.
    punch_race(ctx, ("read",))


def _punch_mremap(ctx: RunContext, p: Params) -> None:
    """punch-mremap (see the module's docstring).  Page 1 is cached and
    mapped shared, not yet faulted in, and held: the set-up keeps a slot
    reference to it (as a caller of load_page does) until every task is
    done, so the punch takes it out of the map with _drop_held.  A store of
    zeros faults it in, mremap moves the region, and the hole is punched.
    The store writes zeros, so page 1 reads as zeros at the end whichever
    lands first; the load through the moved mapping comes after the last
    reference is put, so a PTE left to the page lands in a free frame."""
    f = ShadowFile(ctx, 2, host=True)
    proc = ctx.machine.process()
    base = f.map(proc, 1, RW, MAP_SHARED, first=1)
    target = base + 4 * PGSIZE
    held = f.pm.load_page(1)  # set-up: cached, up to date, mapped nowhere yet

    def store() -> None:
        with contextlib.suppress(SegmentationFault):  # moved first: nothing there
            proc.store(base, bytes(SLOT))

    def mover() -> None:
        got = proc.mremap(base, PGSIZE, PGSIZE, MREMAP_MAYMOVE | MREMAP_FIXED, target)
        f.regions.append(Region(proc, got, got + PGSIZE, PGSIZE, False))

    def punched() -> list[Violation]:
        f.pm.put_page(held)
        f.shadow.write(PGSIZE, _ZEROS)  # what the file holds now
        for how, got in (
            ("a load through the moved mapping", proc.load(target, PGSIZE)),
            ("pread", f.file.pread(PGSIZE, PGSIZE)),
        ):
            problem = mismatch(f"{how} after the punch", PGSIZE, got, _ZEROS)
            if problem is not None:
                return [Violation(COHERENCE, problem.removeprefix("coherence: "))]
        return []

    ctx.machine.spawn(store, core=0, name="store")
    ctx.machine.spawn(mover, core=0, name="mremap")
    ctx.machine.spawn(f.file.fallocate, PUNCH, PGSIZE, PGSIZE, core=1, name="punch")
    ctx.at_end(punched)
    f.end_checks()


SCENARIOS = (
    Scenario(
        "punch-fault",
        "a fault races a hole punched under the page it brings in",
        _punch_fault,
    ),
    Scenario(
        "punch-read",
        "a pread races a hole punched under the page it brings in",
        _punch_read,
    ),
    Scenario(
        "punch-mremap",
        "a write fault maps a page a hole punch drops while mremap moves its PTE: "
        "no PTE outlives the page",
        _punch_mremap,
    ),
)
