"""File scenarios with an injected host fault (check/scenarios/files.py): a host
file's next read, write, truncate or fsync(2) fails while callers race it.
What must hold: the fault reaches a caller as EIO and nothing else (exactly
one caller, where no two can share the failed host call), nothing stays
locked, no byte is lost, and a failed truncate leaves the file whole.

Rules: a scenario arms its fault on the ShadowFile's HostFile
(`faults.fail(kind, 1)`) before it spawns its tasks; `_errno_of` records what
a caller was told, and `_reported` checks at the end that the fault was taken
and told.
"""

from __future__ import annotations

import errno

from pagemap.check.context import RunContext
from pagemap.check.scenario import Params
from pagemap.check.shadow import SLOT, ShadowFile
from pagemap.hw.memory import PGSIZE
from pagemap.kernel.errors import BusError, IOFailure
from pagemap.kernel.hostfs import HostFile
from pagemap.kernel.mman import MAP_SHARED, PROT_READ, PROT_WRITE
from pagemap.oracles import COHERENCE, CRASH, DURABILITY, Violation
from pagemap.oracles.coherence import describe


def _eio_fsync(ctx: RunContext, p: Params) -> None:
    # Over a host file whose next write fails: two fsyncs race a store.  The
    # failed page stays dirty and cached, so the fsync that does not fail (or
    # the end) writes it; an fsync reports EIO, never loses the bytes.
    f = ShadowFile(ctx, 2, host=True)
    proc = ctx.machine.process()
    base = f.map(proc, 2, PROT_READ | PROT_WRITE, MAP_SHARED)
    f.store(proc, base)  # dirty through the mapping before the race
    assert isinstance(f.file, HostFile)
    f.file.faults.fail("write", 1)

    def syncer() -> None:
        try:
            f.file.fsync()
        except IOFailure as exc:
            ctx.caught(exc)
            if exc.errno != errno.EIO:
                ctx.fail(CRASH, f"a failed host write gave errno {exc.errno}, not EIO")

    def writer() -> None:
        f.store(proc, base + PGSIZE)
        syncer()

    ctx.machine.spawn(syncer, name="fsync")
    ctx.machine.spawn(writer, name="store-fsync")
    f.end_checks()


def _errno_of(ctx: RunContext, seen: list[int], exc: OSError, kind: str) -> None:
    """Record an injected host fault as a caller saw it: EIO, and nothing else."""
    ctx.caught(exc)
    seen.append(exc.errno if isinstance(exc.errno, int) else 0)
    if exc.errno != errno.EIO:
        ctx.fail(CRASH, f"a failed host {kind} reached {ctx.who()} as errno {exc.errno}, not EIO")


def _reported(ctx: RunContext, f: ShadowFile, kind: str, seen: list[int], exactly: bool) -> None:
    """At the end: the injected fault was taken and reached a caller (exactly one
    caller, when no two callers can share the failed host call)."""

    def check() -> list[Violation]:
        assert isinstance(f.file, HostFile)
        if f.file.faults.pending(kind):
            return [Violation(CRASH, f"the injected host {kind} fault was never taken")]
        if not seen or (exactly and len(seen) != 1):
            return [
                Violation(
                    CRASH,
                    f"one host {kind} failed, and {len(seen)} callers were told so "
                    f"({'exactly one' if exactly else 'at least one'} must be)",
                )
            ]
        return []

    ctx.at_end(check)


def _eio_read(ctx: RunContext, p: Params) -> None:
    # A host file's next read fails while a pread and a fault through a
    # shared mapping race to read its one page in.  The failed readpage takes
    # the page out of the map and wakes the loader asleep on its lock, which
    # fails too: at least one caller gets EIO (no other errno), nobody gets
    # bytes that were never read, nothing stays locked, and each caller's
    # retry reads the file's bytes.
    f = ShadowFile(ctx, 1, host=True)
    proc = ctx.machine.process()
    base = f.map(proc, 1, PROT_READ, MAP_SHARED)
    assert isinstance(f.file, HostFile)
    f.file.faults.fail("read", 1)
    seen: list[int] = []

    def reader() -> None:
        try:
            f.pread(0)
        except IOFailure as exc:
            _errno_of(ctx, seen, exc, "read")
            f.pread(0)

    def loader() -> None:
        try:
            f.load(proc, base + SLOT)
        except IOFailure as exc:
            _errno_of(ctx, seen, exc, "read")
            f.load(proc, base + SLOT)

    ctx.machine.spawn(reader, name="pread")
    ctx.machine.spawn(loader, name="fault")
    _reported(ctx, f, "read", seen, exactly=False)
    f.end_checks()


def _eio_truncate(ctx: RunContext, p: Params) -> None:
    # A host file's next truncate fails: truncate must report EIO and leave
    # the file as it was (its size, its pages, the host's length), while a
    # store through a shared mapping faults on the page it would cut, a pread
    # reads that page, and an fsync writes it.  Until the second truncate,
    # which succeeds, has begun, page 1 is inside the file: the store may not
    # get a bus error, nor the pread a short count.  Nothing stored inside
    # the file may be lost.
    f = ShadowFile(ctx, 2, host=True)
    proc = ctx.machine.process()
    base = f.map(proc, 2, PROT_READ | PROT_WRITE, MAP_SHARED)
    assert isinstance(f.file, HostFile)
    f.file.faults.fail("truncate", 1)
    seen: list[int] = []
    second = [False]  # the truncate that succeeds has begun

    def truncater() -> None:
        try:
            f.truncate(PGSIZE)
        except IOFailure as exc:
            _errno_of(ctx, seen, exc, "truncate")
        second[0] = True
        f.truncate(PGSIZE)

    def inside(what: str) -> None:
        if not second[0]:
            ctx.fail(
                COHERENCE,
                f"{ctx.who()}'s {what} inside the file: a truncate that failed (and left "
                "the file whole) was seen",
            )

    def user() -> None:
        try:
            f.store(proc, base + PGSIZE + SLOT)  # a fault: checks the size
        except BusError:
            inside("store got a bus error")
        got = f.file.pread(SLOT, PGSIZE)
        if len(got) != SLOT:
            inside(f"pread got {len(got)} of {SLOT} bytes")
        f.file.fsync()

    ctx.machine.spawn(truncater, name="truncate")
    ctx.machine.spawn(user, name="store-pread-fsync")
    _reported(ctx, f, "truncate", seen, exactly=True)
    f.end_checks()


def _eio_sync(ctx: RunContext, p: Params) -> None:
    # A host file's next fsync(2) fails while two fsyncs race a store: the
    # pages were written, the host could not make them durable, and exactly
    # one fsync (the one whose host call failed) must say so with EIO; the
    # other returns, nothing is lost, nothing stays locked.
    f = ShadowFile(ctx, 2, host=True)
    proc = ctx.machine.process()
    base = f.map(proc, 2, PROT_READ | PROT_WRITE, MAP_SHARED)
    f.store(proc, base)  # dirty through the mapping before the race
    assert isinstance(f.file, HostFile)
    f.file.faults.fail("sync", 1)
    seen: list[int] = []

    def syncer() -> None:
        try:
            f.file.fsync()
        except IOFailure as exc:
            _errno_of(ctx, seen, exc, "sync")
            return
        # Returned without error: the store made before the race is written.
        want, got = f.shadow.expect(0, SLOT), f.backing(0)[:SLOT]
        if got != want:
            ctx.fail(
                DURABILITY,
                f"fsync returned, yet the file holds {describe(got)} at offset 0, not "
                f"{describe(want)}, stored through a mapping before fsync began",
            )

    def writer() -> None:
        f.store(proc, base + PGSIZE)
        syncer()

    ctx.machine.spawn(syncer, name="fsync")
    ctx.machine.spawn(writer, name="store-fsync")
    _reported(ctx, f, "sync", seen, exactly=True)
    f.end_checks()
