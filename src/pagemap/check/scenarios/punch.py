"""Hole-punching scenarios: pages added to the cache while a hole is punched
(kernel/fallocate.py, kernel/invalidate.py)."""

from __future__ import annotations

from collections.abc import Callable

from pagemap.check.context import RunContext
from pagemap.check.scenario import Params, Scenario
from pagemap.check.shadow import ShadowFile
from pagemap.hw.memory import PGSIZE
from pagemap.kernel.fallocate import PUNCH
from pagemap.kernel.mman import MAP_SHARED, PROT_READ
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
)
