"""The zoo's copy-on-write rows: fork, forced writes, pins and MADV_DONTNEED.

As in bugs.py, each scenario takes `fix` (0..1, default 1) and with 0 turns
off the switch the kernel reads where the published fix lives (an attribute
of the Proc, set before any task runs: kernel/fork.py, kernel/gup.py).  The
private-isolation oracle (oracles/private.py) judges each: a byte written
privately never reaches the file, and a private copy never shows another
process's later write.
"""

from __future__ import annotations

from pagemap.check.context import RunContext
from pagemap.check.scenario import Params, Scenario
from pagemap.check.scenarios.known.bugs import Bug, Step
from pagemap.check.scenarios.process import end_anonymous
from pagemap.check.shadow import SLOT, ShadowFile
from pagemap.hw.memory import PGSIZE
from pagemap.kernel.madvise import MADV_DONTNEED
from pagemap.kernel.mman import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ
from pagemap.kernel.mman import PROT_RW as RW
from pagemap.oracles import Violation
from pagemap.oracles.private import PrivateIsolation, own_bytes

FIX = {"fix": (0, 1)}


def _value(text: bytes) -> bytes:
    return text.ljust(SLOT, b".")


def _dirty_cow(ctx: RunContext, p: Params) -> None:
    """Dirty COW: Linux 19be0eaffa3a (2016, CVE-2016-5195, "mm: remove gup_flags
    FOLL_WRITE games from __get_user_pages()").

    Racing paths: a forced write (/proc/pid/mem) into a read-only private
    mapping of a file (follow the PTE, fault for write: the fault makes a
    private copy but leaves the PTE read-only, so follow again), and
    MADV_DONTNEED of the page (zap the PTE, free the copy).  Interleaving:
    the write faults and gets its copy; before kernel 19be0eaffa3a it then
    drops FOLL_WRITE and retries as a read; DONTNEED zaps the copy; the
    read retry faults the file's page in read-only and the kernel writes
    into it.  Broken: the read-only file's page cache holds the forced bytes
    (private isolation).  The fix retries with FOLL_COW, which accepts a
    read-only PTE only if it maps the copy (RemoteAccess._follow); fix=0 is
    Proc.foll_cow = False.
    """
    f = ShadowFile(ctx, 1)
    proc = ctx.machine.process()
    proc.foll_cow = bool(p["fix"])
    base = f.map(proc, 1, PROT_READ, MAP_PRIVATE)
    f.pread(0)  # cached: the faults find it, and the race is not a read's
    original = f.shadow.page(0)
    iso = PrivateIsolation(f.name, f.pm, 1, f.backing, frozen=lambda index: original)
    poke = _value(b"dirtycow")
    iso.secret(poke)

    def writer() -> None:
        proc.access_remote(base + SLOT, poke, force=True)

    def advisor() -> None:
        proc.madvise(base, PGSIZE, MADV_DONTNEED)

    ctx.machine.spawn(writer, core=0, name="write")
    ctx.machine.spawn(advisor, core=1, name="madvise")
    ctx.at_end(iso.check)
    f.end_checks()


def _fork_fault(ctx: RunContext, p: Params) -> None:
    """fork vs fault: Linux fb49c455323f (2023, "fork: lock VMAs of the parent
    process when forking").

    Racing paths: fork (write-protect the parent's PTEs and share its pages,
    then flush the parent's TLBs), a store on one core of the parent through
    a TLB entry still writable (cached before fork), and a store on another
    core of the parent that faults on the write-protected page and copies it.
    Interleaving: fork write-protects; with per-VMA locks the fault need not
    wait for fork to finish, so it copies the page before fork's flush; the
    first core's store lands in the old page through its stale entry; the
    fault maps the copy.  Broken: the parent lost a store it made (and the
    child got it).  Linux's fix locks every VMA of the parent during fork, so
    the fault waits for the flush; our fault waits on vmr_lock, which fork
    holds until its flush (Fork.fork); fix=0 is Proc.fork_locks_vmas = False,
    which flushes after letting the lock go, the window per-VMA locks opened.
    """
    proc = ctx.machine.process()
    proc.fork_locks_vmas = bool(p["fix"])
    base = proc.mmap(PGSIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    proc.store(base, _value(b"before"))  # set-up runs on core 0: its entry caches W and D
    mine, other = _value(b"stored"), _value(b"faulted")

    ctx.machine.spawn(proc.store, base, mine, core=0, name="store")
    ctx.machine.spawn(proc.fork, core=1, name="fork")
    ctx.machine.spawn(proc.store, base + SLOT, other, core=2, name="fault")

    def parent_kept() -> list[Violation]:
        lost = own_bytes(f"p{proc.pid}", base, proc.load(base, SLOT), (mine,))
        return [] if lost is None else [lost]

    ctx.at_end(parent_kept)
    end_anonymous(ctx)


def _cow_either_way(ctx: RunContext, p: Params) -> None:
    """COW breaks either way: Linux 17839856fd58 (2020, CVE-2020-29374, "gup:
    document and work around 'COW can break either way' issue").

    Racing paths: the child pins a page it shares with its parent after
    fork (get_user_pages for reading, as vmsplice does), drops its mapping
    (MADV_DONTNEED) and reads through the pin; the parent stores to the page.
    Interleaving: the pin takes the shared page itself; DONTNEED leaves the
    parent the page's only mapper; the parent's write fault reuses the page
    in place (the map count says it is alone); the child reads the parent's
    new bytes through its pin.  Broken: the child sees a write its parent
    made after fork (private isolation).  The fix breaks COW for a pin of a
    private mapping, so the pin holds the child's own copy (RemoteAccess.
    _get_user_page); fix=0 is the child's Proc.gup_breaks_cow = False.
    """
    parent = ctx.machine.process()
    base = parent.mmap(PGSIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    before, after = _value(b"before"), _value(b"after")
    parent.store(base, before)
    child = parent.fork()
    child.gup_breaks_cow = bool(p["fix"])

    def vmsplice() -> None:
        pin = child.pin_user_page(base)
        child.madvise(base, PGSIZE, MADV_DONTNEED)
        got = pin.read(0, SLOT)
        pin.release()
        leak = own_bytes(ctx.who(), base, got, (before,))
        if leak is not None:
            ctx.fail(leak.oracle, leak.message)

    ctx.machine.spawn(vmsplice, core=0, name="child")
    ctx.machine.spawn(parent.store, base, after, core=0, name="parent")
    end_anonymous(ctx)


SCENARIOS = (
    Scenario(
        "known-dirty-cow",
        "19be0eaffa3a (2016, Dirty COW): a forced write retries as a read after "
        "MADV_DONTNEED dropped its copy and writes a read-only file's page cache",
        _dirty_cow,
        {"fix": 1},
        limits=FIX,
    ),
    Scenario(
        "known-fork-fault",
        "fb49c455323f (2023): a parent's fault copies a page fork write-protected before "
        "fork's flush; a store through a stale entry is lost",
        _fork_fault,
        {"fix": 1},
        cores=3,
        limits=FIX,
    ),
    Scenario(
        "known-cow-either-way",
        "17839856fd58 (2020): a child's pin of a shared page; the parent, alone after the "
        "child's DONTNEED, reuses it and the child reads the parent's later write",
        _cow_either_way,
        {"fix": 1},
        cores=1,  # the race is between two processes, not two cores; each costs a flush 3 steps
        limits=FIX,
    ),
)


_STORE = ("kernel/uaccess.py", "UserAccess._store_in_page")

BUGS = (
    Bug(
        "known-dirty-cow",
        2016,
        "19be0eaffa3a",
        "Dirty COW: a forced write into a read-only private mapping lands in the page cache",
        racy=(
            Step("kernel/mm.py", "MM._clear_ptes", "fetch_and", "madvise"),
            Step("kernel/gup.py", "RemoteAccess._follow", "load", "write"),
        ),
        mechanism=(
            Step("kernel/fault.py", "FaultHandler._zeroed_page", "frame.fill", "write"),
            Step("kernel/mm.py", "MM._clear_ptes", "fetch_and", "madvise"),
            Step("kernel/fault.py", "FaultHandler._set_pte", "cas", "write"),
            Step("kernel/gup.py", "Pin.write", "kmap.store", "write"),
        ),
    ),
    Bug(
        "known-fork-fault",
        2023,
        "fb49c455323f",
        "fork vs fault: a parent's fault copies a page before fork's flush",
        racy=(
            Step("kernel/fork.py", "Fork._share_anon", "fetch_and", "fork"),
            Step("kernel/cow.py", "CopyOnWrite._break_cow", "frame.fill", "fault"),
        ),
        mechanism=(
            Step("kernel/fork.py", "Fork._share_anon", "fetch_and", "fork"),
            Step("kernel/cow.py", "CopyOnWrite._break_cow", "frame.fill", "fault"),
            Step(*_STORE, "frame.store", "store"),
            Step("kernel/mm.py", "MM.tlb_shootdown", "tlb.flush", "fork"),
        ),
    ),
    Bug(
        "known-cow-either-way",
        2020,
        "17839856fd58",
        "COW breaks either way: a pinned page is reused by the parent's write",
        racy=(
            Step("kernel/mm.py", "MM._clear_ptes", "fetch_and", "child"),
            Step(*_STORE, "frame.store", "parent"),
        ),
        mechanism=(
            Step("kernel/gup.py", "RemoteAccess._follow", "load", "child"),
            Step("kernel/mm.py", "MM._clear_ptes", "fetch_and", "child"),
            Step(*_STORE, "frame.store", "parent"),
            Step("kernel/gup.py", "Pin.read", "kmap.load", "child"),
        ),
    ),
)
