"""Copy-on-write scenarios: fork, forced writes and pins racing the rest.

fork racing a store through a stale TLB entry and a COW fault on another
core (fork-store), fork racing removal of a file page the child faults in
(fork-remove), a forced write (/proc/pid/mem) into a read-only private
mapping racing MADV_DONTNEED and the user's own load (gup-dontneed), the
kernel's write through a pin of a shared file page racing removal
(gup-remove), mlock racing removal (mlock-remove), and a
child's pin of a page it shares with its parent held across the parent's
write (pin-parent-write).  The private-isolation oracle (oracles/private.py)
judges what each process sees of the others' writes and what reaches the
file; memory safety, coherence and accounting judge the rest as everywhere.
The same mechanisms with a published fix off are the zoo's rows
(check/scenarios/known/cow.py).
"""

from __future__ import annotations

from pagemap.check.context import RunContext
from pagemap.check.scenario import Params, Scenario
from pagemap.check.scenarios.process import end_anonymous
from pagemap.check.shadow import SLOT, Region, ShadowFile
from pagemap.hw.memory import PGSHIFT, PGSIZE
from pagemap.hw.mmu import PTE_P
from pagemap.kernel.errors import BusError
from pagemap.kernel.madvise import MADV_DONTNEED
from pagemap.kernel.mman import MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PROT_READ
from pagemap.kernel.mman import PROT_RW as RW
from pagemap.kernel.proc import Proc
from pagemap.oracles import COHERENCE, Violation
from pagemap.oracles.private import PrivateIsolation, own_bytes


def _value(text: bytes) -> bytes:
    return text.ljust(SLOT, b".")


ZERO = bytes(SLOT)


def _fork_store(ctx: RunContext, p: Params) -> None:
    # Core 0 stores through the W|D entry it cached before fork; core 2
    # stores to another slot, faulting on the page fork write-protects and
    # copying it; fork runs on core 1.  The parent keeps both stores, and
    # the child sees each store either as it was when fork shared the page or
    # not at all; a store the parent makes after everything is never the
    # child's (mutant fork-no-wrprotect).
    proc = ctx.machine.process()
    base = proc.mmap(PGSIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    before, mine, other, late = (_value(t) for t in (b"before", b"mine", b"other", b"late"))
    proc.store(base, before)  # set-up runs on core 0: its entry caches W and D
    children: list[Proc] = []

    ctx.machine.spawn(proc.store, base, mine, core=0, name="store")
    ctx.machine.spawn(lambda: children.append(proc.fork()), core=1, name="fork")
    ctx.machine.spawn(proc.store, base + SLOT, other, core=2, name="fault")

    def isolated() -> list[Violation]:
        (child,) = children
        proc.store(base, late)
        found = [
            own_bytes(f"p{proc.pid}", base, proc.load(base, SLOT), (late,)),
            own_bytes(f"p{proc.pid}", base + SLOT, proc.load(base + SLOT, SLOT), (other,)),
            own_bytes(f"p{child.pid}", base, child.load(base, SLOT), (before, mine)),
            own_bytes(f"p{child.pid}", base + SLOT, child.load(base + SLOT, SLOT), (ZERO, other)),
        ]
        return [v for v in found if v is not None]

    ctx.at_end(isolated)
    end_anonymous(ctx)


def _fork_remove(ctx: RunContext, p: Params) -> None:
    # fork registers the child's regions with the page map while removal
    # walks them, and the child faults the page in: once removal returns no
    # PTE of either process may name a frame it freed (mutant
    # fork-unregistered: the child's region never joins the map).
    f = ShadowFile(ctx, 1)
    proc = ctx.machine.process()
    base = f.map(proc, 1, PROT_READ, MAP_SHARED)
    f.load(proc, base)  # mapped in the parent

    def forker() -> None:
        child = proc.fork()
        f.regions.append(Region(child, base, base + PGSIZE, 0, False))
        f.load(child, base)

    def remover() -> None:
        f.pm.remove_contig(0, 1)
        f.no_stale_translation()

    ctx.machine.spawn(forker, name="fork")
    ctx.machine.spawn(remover, name="remove")
    f.end_checks()


def _gup_dontneed(ctx: RunContext, p: Params) -> None:
    # A forced write into a read-only private mapping of a file races
    # MADV_DONTNEED of its copy and the user's load, which may map the file's
    # page read-only meanwhile: the write lands in a private copy, never in
    # the file (mutant follow-any-read-only: the retry takes whatever
    # read-only page is mapped).
    f = ShadowFile(ctx, 1)
    proc = ctx.machine.process()
    base = f.map(proc, 1, PROT_READ, MAP_PRIVATE)
    f.pread(0)  # cached: the race is not a read's
    original = f.shadow.page(0)
    iso = PrivateIsolation(f.name, f.pm, 1, f.backing, frozen=lambda index: original)
    poke = _value(b"poke")
    iso.secret(poke)

    def writer() -> None:
        proc.access_remote(base + SLOT, poke, force=True)

    ctx.machine.spawn(writer, core=0, name="write")
    ctx.machine.spawn(proc.madvise, base, PGSIZE, MADV_DONTNEED, core=1, name="madvise")
    ctx.machine.spawn(f.load, proc, base, core=1, name="load")
    ctx.at_end(iso.check)
    f.end_checks()


def _gup_remove(ctx: RunContext, p: Params) -> None:
    # The kernel writes into a shared file mapping of a process (ptrace's
    # POKEDATA: a pin of the file page, a write through the kernel's mapping)
    # and reads it back, while removal drops the page: the pin keeps the
    # frame, and the write makes the page dirty so that no removal after it
    # drops it unwritten (mutant pin-write-clean).
    f = ShadowFile(ctx, 1)
    proc = ctx.machine.process()
    base = f.map(proc, 1, RW, MAP_SHARED)
    f.load(proc, base)  # mapped and cached

    def poker() -> None:
        data = f.shadow.next_stamp(SLOT)
        proc.access_remote(base + SLOT, data)
        f.shadow.write(SLOT, data)
        got = proc.read_remote(base + SLOT, SLOT)
        if got != data:
            ctx.fail(COHERENCE, f"{ctx.who()} read back {got.hex()}, not {data.hex()}")

    def remover() -> None:
        f.pm.remove_contig(0, 1)
        f.no_stale_translation()

    ctx.machine.spawn(poker, name="poke")
    ctx.machine.spawn(remover, name="remove")
    f.end_checks()


def _mlock_remove(ctx: RunContext, p: Params) -> None:
    # mlock marks a shared file mapping MAP_LOCKED by new regions, registered
    # before the old one leaves its page map, and populates it, while removal
    # walks the map's regions: removal either unmaps the page before the lock
    # or passes a locked region over; no PTE may name a frame it freed
    # (mutant mlock-unregisters-first), and once both are done the locked
    # page is mapped.
    f = ShadowFile(ctx, 2)
    proc = ctx.machine.process()
    base = f.map(proc, 2, PROT_READ, MAP_SHARED)
    f.load(proc, base)  # mapped: removal has a PTE to clear

    def remover() -> None:
        f.pm.remove_contig(0, 2)
        f.no_stale_translation()

    ctx.machine.spawn(proc.mlock, base, PGSIZE, name="mlock")
    ctx.machine.spawn(remover, name="remove")

    def locked_mapped() -> list[Violation]:
        word = proc.page_table.lookup(base >> PGSHIFT)
        if word is None or not word.value & PTE_P:
            return [Violation(COHERENCE, "mlock returned, yet its page is not mapped at the end")]
        return []

    ctx.at_end(locked_mapped)
    f.end_checks()


def _pin_parent_write(ctx: RunContext, p: Params) -> None:
    # The child pins the page it shares with its parent and reads through
    # the pin and its own mapping while the parent writes it: the child sees
    # the page as fork left it (mutant reuse-shared: a write fault reuses a
    # page another process still maps).
    parent = ctx.machine.process()
    base = parent.mmap(PGSIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    before, after = _value(b"before"), _value(b"after")
    parent.store(base, before)
    child = parent.fork()

    def judge(who: str, got: bytes, allowed: tuple[bytes, ...]) -> None:
        problem = own_bytes(who, base, got, allowed)
        if problem is not None:
            ctx.fail(problem.oracle, problem.message)

    def pinner() -> None:
        pin = child.pin_user_page(base)
        judge(ctx.who(), pin.read(0, SLOT), (before,))
        judge(ctx.who(), child.load(base, SLOT), (before,))
        pin.release()

    def writer() -> None:
        parent.store(base, after)
        judge(ctx.who(), parent.load(base, SLOT), (after,))

    ctx.machine.spawn(pinner, core=0, name="child")
    ctx.machine.spawn(writer, core=1, name="parent")
    end_anonymous(ctx)


def _fork_truncate(ctx: RunContext, p: Params) -> None:
    # fork copies the parent's private copy of a file page into the child
    # while truncate cuts the file before it: whichever goes first, no process
    # may read that copy once both are done (a load there is a bus error, as
    # in truncate-private).  Truncate must find the child's region even when
    # it collected the regions before fork registered it.
    f = ShadowFile(ctx, 1)
    proc = ctx.machine.process()
    base = f.map(proc, 1, RW, MAP_PRIVATE)
    f.store(proc, base)  # the parent's private copy of page 0
    children: list[Proc] = []

    ctx.machine.spawn(lambda: children.append(proc.fork()), name="fork")
    ctx.machine.spawn(f.truncate, 0, name="truncate")

    def no_copy_survives() -> list[Violation]:
        found = []
        for who in (proc, *children):
            try:
                got = who.load(base, SLOT)
            except BusError:
                continue
            found.append(
                Violation(
                    COHERENCE,
                    f"p{who.pid} loaded {got.hex()} past the end of the truncated file: "
                    "a private copy survived truncate",
                )
            )
        return found

    ctx.at_end(no_copy_survives)
    f.end_checks()


SCENARIOS = (
    Scenario(
        "fork-store",
        "fork races a store through a stale TLB entry and a COW fault on a third core",
        _fork_store,
        cores=3,
    ),
    Scenario(
        "fork-remove",
        "fork races removal of a file page the child faults in",
        _fork_remove,
    ),
    Scenario(
        "fork-truncate",
        "fork copies a private copy of a file page while truncate cuts the file before it",
        _fork_truncate,
    ),
    Scenario(
        "gup-dontneed",
        "a forced write into a read-only private mapping races MADV_DONTNEED and a load",
        _gup_dontneed,
    ),
    Scenario(
        "gup-remove",
        "the kernel writes a shared file mapping through a pin (ptrace) while removal drops it",
        _gup_remove,
        dirty_tracking="dbit",  # as its author pinned it; the pin's write marks the page dirty
    ),
    Scenario(
        "mlock-remove",
        "mlock of a shared file mapping (new locked regions, then population) races removal",
        _mlock_remove,
    ),
    Scenario(
        "pin-parent-write",
        "a child's pin of a page shared with its parent, held across the parent's write",
        _pin_parent_write,
    ),
)
