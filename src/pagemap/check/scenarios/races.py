"""Races the census once found no scenario for (issue 18, races reached).

Each scenario here races a kernel function that `pagemap check --coverage`
listed as taking scheduling points that no scenario reordered: another
task's dependent step explored on both sides of it (check/races.py).  The
function each one races is named below and asserted by
tests/check/test_race_scenarios.py.

- close-use: a file is closed while another task pwrites through it and
  maps it (File._check_open, File.closed).  An operation that began after
  the close returned must be refused with EBADF; one that was let through
  is judged as any write or store is.
- sync-truncate: fsync and msync's MS_SYNC (the backing store's sync, the
  size it reads) race a truncate that cuts the file (Inode.fsync,
  File.sync_backing).  What each sync began with is durable as it returns,
  less what the truncate cut meanwhile (oracles/synced.py).
- expire-remove: the writeback task's pass over a map (it marks a dirty
  page aged, and writes it at the next pass) races a pwrite and a remover
  of that page (PageMap.writeback_expired).  Nothing is lost.
- truncate-held: a truncate drops a page a pread holds (its frame freed at
  the last put) while another pread loads a page: the dropped page leaves
  reclaim's policy (Reclaim.removed) as the loaded one joins it, under
  reclaim's lock.
- reclaim-contend: memory is full but for one frame; two preads of pages
  not cached allocate: the first takes the last frame and kicks kswapd, the
  second reclaims directly, and kswapd's round and the direct reclaim
  contend for the reclaim mutex (Flusher.reclaim_round, Reclaim.direct).
- reclaim-remove: the same with one reader and a user's remove_contig of
  the file's first pages: reclaim's removal (Removal.remove_pages) and the
  user's take the map's single-remover word in turn.  In both the preads
  read the file's bytes, nothing is lost, nothing leaks.
- reclaim-remove-reuse: memory full, no kswapd; a pread reclaims directly
  while a user removes the file's first pages and then preads a page not
  cached, reusing a frame they freed.  Reclaim's choice of victims
  (Reclaim.shrink: the policy's victims, a point at each page it looks at)
  races the removal's Reclaim.removed_many; both hold reclaim's lock.

Rules: the scenarios use only the kernel's public calls and the ShadowFile
oracles; each explores to the end at the default bounds in a few seconds.
"""

from __future__ import annotations

from pagemap.check.context import RunContext
from pagemap.check.memdisk import MemInode
from pagemap.check.scenario import Params, Scenario
from pagemap.check.shadow import SLOT, Region, ShadowFile, initial_bytes
from pagemap.hw.memory import PGSIZE
from pagemap.kernel.errors import AlreadyClosed
from pagemap.kernel.mman import MAP_SHARED, PROT_READ, PROT_WRITE
from pagemap.kernel.vfs import File
from pagemap.oracles import COHERENCE
from pagemap.oracles.coherence import describe

RW = PROT_READ | PROT_WRITE


# -- close-use ------------------------------------------------------------------------


def _close_use(ctx: RunContext, p: Params) -> None:
    # A second open of the file (the ShadowFile's own stays open for the end
    # checks) is closed by one task while another pwrites through it and
    # then maps it and stores through the mapping.  Each of the user's calls
    # checks the file is open (an atomic load of its closed word, which
    # close swaps): one that began after close returned must raise EBADF
    # and change nothing; one let through must land, be read back and be
    # durable, as any write is (a mapping outlives its fd, as on Linux).
    f = ShadowFile(ctx, 1)
    user = File(f.inode, f.name, "r+", True, True)
    proc = ctx.machine.process()
    # Close has returned: a word, so that DPOR sees the user's look at it
    # depend on the close and explores both orders (a plain flag would let
    # it take the two tasks for independent once a mutant drops the check).
    closed = ctx.machine.executor.atomic(0, "close-use.returned")

    def closer() -> None:
        user.close()
        closed.store(1)

    def refused_late(what: str, after: bool) -> None:
        if after:
            ctx.fail(COHERENCE, f"{ctx.who()}'s {what} went through a file closed before it began")

    def user_task() -> None:
        after = bool(closed.load())
        data = f.shadow.next_stamp(0)
        try:
            user.pwrite(data, 0)
        except AlreadyClosed:
            pass
        else:
            refused_late("pwrite", after)
            f.shadow.write(0, data)
            f.pread(0)
        after = bool(closed.load())
        try:
            base = proc.mmap(PGSIZE, RW, MAP_SHARED, file=user, offset=0)
        except AlreadyClosed:
            return
        refused_late("mmap", after)
        f.regions.append(Region(proc, base, base + PGSIZE, 0, False))
        f.store(proc, base + SLOT)
        f.load(proc, base + SLOT)

    ctx.machine.spawn(user_task, name="pwrite-mmap")
    ctx.machine.spawn(closer, name="close")
    f.end_checks()


# -- sync-truncate ----------------------------------------------------------------------


def _sync_truncate(ctx: RunContext, p: Params) -> None:
    # Two pages, both dirty through a shared mapping before the race.  One
    # task fsyncs the file and then msyncs the mapping (MS_SYNC: the backing
    # store's sync after the range is written); the other cuts the file to
    # `truncate_to`.  The backing store's sync reads the size the truncate
    # sets.  As each sync returns, every store that had landed when it began
    # is in the backing store, less the bytes the truncate cut meanwhile; at
    # the end nothing is lost (oracles/synced.py, ShadowFile).
    f = ShadowFile(ctx, 2)
    proc = ctx.machine.process()
    base = f.map(proc, 2, RW, MAP_SHARED)
    f.store(proc, base)
    f.store(proc, base + PGSIZE + SLOT)

    def syncer() -> None:
        f.fsync()
        f.msync(proc, base, PGSIZE)  # page 0: never cut

    def truncater() -> None:
        f.truncate(p["truncate_to"])

    ctx.machine.spawn(syncer, name="fsync-msync")
    ctx.machine.spawn(truncater, name="truncate")
    f.end_checks()


# -- expire-remove ----------------------------------------------------------------------


def _expire_remove(ctx: RunContext, p: Params) -> None:
    # Page 0 dirty before the race.  The writeback task's passes (the first
    # marks the dirty page aged, the second writes it) race a pwrite into
    # the page and a remover that evicts it: a page written back must not
    # lose the pwrite made during its writepage, a page removed must be
    # written first.  Nothing is lost; what a pread reads is the latest write.
    f = ShadowFile(ctx, 1)
    f.pwrite(0)

    def writeback() -> None:
        for _ in range(p["passes"]):
            f.pm.writeback_expired()

    def writer_remover() -> None:
        f.pwrite(SLOT)
        f.pm.remove_contig(0, 1)

    ctx.machine.spawn(writeback, name="writeback")
    ctx.machine.spawn(writer_remover, name="pwrite-remove")
    f.end_checks()


# -- reclaim-contend ----------------------------------------------------------------------


def _reclaim_contend(ctx: RunContext, p: Params) -> None:
    # Memory full of the file's clean pages (read before the race) but for
    # one frame.  `readers` preads each read a page not cached: the first
    # allocation takes the last frame and, leaving none, kicks kswapd (the
    # flusher, period 1 ms); the next finds no frame and reclaims in its own
    # task (Reclaim.direct), while kswapd's round (Flusher.reclaim_round)
    # wants the same reclaim mutex: one at a time, and the second finds the
    # frames the first freed.  With `remover`, a user removes the file's
    # first pages while reclaim removes its victims (PageMap.remove_pages):
    # one remover per map, reclaim's waits for the user's.  The preads read
    # the file's bytes; nothing is lost, nothing leaks.
    machine = ctx.machine
    pages = p["pages"]
    f = ShadowFile(ctx, pages)
    cached = 0
    while machine.allocator.free_frames() > 1 and cached < pages - 1:
        f.pread(cached * PGSIZE)
        cached += 1
    machine.start_flusher(period=0.001)

    def reader(index: int) -> None:
        f.pread(index * PGSIZE)

    def remover() -> None:
        f.pm.remove_contig(0, 2)
        f.no_stale_translation()

    for i in range(p["readers"]):
        machine.spawn(reader, cached + i, name=f"reader-{i}")
    if p["remover"]:
        machine.spawn(remover, name="remover")
    f.end_checks()


# -- reclaim-remove-reuse -----------------------------------------------------------------


def _reclaim_remove_reuse(ctx: RunContext, p: Params) -> None:
    # Memory full of the file's clean pages, and no kswapd: a pread of a
    # page not cached finds no frame and reclaims in its own task
    # (Reclaim.direct).  Meanwhile a user removes the file's first pages,
    # which are reclaim's first victims, and then preads another page not
    # cached, whose frame may be one the removal freed.  Reclaim asks the
    # policy for victims with reclaim's lock held (Reclaim.shrink), taking a
    # point at each page it looks at (Reclaim._evictable); the removal takes
    # the freed pages out of the policy under the same lock
    # (Reclaim.removed_many) before their frames go back.  Without the lock
    # on either side, the removal can run while a page it freed is taken
    # out of the policy's lists as a victim looked at and refused: the page
    # goes back into the lists after the removal forgot it, and its frame,
    # loaded again by the user's pread, is inserted twice (a KernelBug; or
    # the removal finds a victim in flight that is not, a KeyError).  The
    # preads read the file's bytes; nothing leaks.
    machine = ctx.machine
    pages = p["pages"]
    f = ShadowFile(ctx, pages)
    cached = 0
    while machine.allocator.free_frames() and cached < pages - 2:
        f.pread(cached * PGSIZE)
        cached += 1

    def reader() -> None:
        f.pread(cached * PGSIZE)

    def remover() -> None:
        f.pm.remove_contig(0, 2)
        f.no_stale_translation()
        f.pread((cached + 1) * PGSIZE)

    machine.spawn(reader, name="reader")
    machine.spawn(remover, name="remove-pread")
    f.end_checks()


# -- truncate-held ----------------------------------------------------------------------


def _truncate_held(ctx: RunContext, p: Params) -> None:
    # Three pages, page 1 cached.  A truncate to one page drops pages 1 and
    # 2 while a pread holds page 1 (a slot reference, for its copy): the
    # page leaves the map and reclaim's policy (Reclaim.removed, under
    # reclaim's lock, with this map's lock held) and its frame is freed at
    # the last put, the pread's or the truncate's.  Meanwhile a pread of
    # another file loads its page, which joins that file's map and the
    # policy under reclaim's lock (Reclaim.inserted, with the other map's
    # lock held: the two map locks do not order them).  The pread of page 1
    # reads its bytes, or nothing once the truncate came first; the other
    # file reads its bytes; nothing leaks.
    f = ShadowFile(ctx, 3)
    old = f.shadow.expect(PGSIZE, SLOT)
    f.file.pread(SLOT, PGSIZE)
    done = [False]  # the truncate has returned

    def truncater() -> None:
        f.truncate(PGSIZE)
        done[0] = True

    def holder() -> None:
        after = done[0]
        got = f.file.pread(SLOT, PGSIZE)
        # Zeros past the new end: the pread began before the cut and copied
        # page 1 after truncate zeroed what it cut (Inode.truncate).
        if got != b"" and (after or got not in (old, bytes(SLOT))):
            ctx.fail(
                COHERENCE,
                f"{ctx.who()} read {describe(got)} at offset {PGSIZE} of a file cut to "
                f"{PGSIZE}" + (" before it began" if after else ""),
            )

    machine = ctx.machine
    other = File(
        MemInode(machine.executor, machine.page_map, "other", initial_bytes(1)),
        "other",
        "r",
        True,
        False,
    )

    def loader() -> None:
        if other.pread(SLOT, 0) != initial_bytes(1)[:SLOT]:
            ctx.fail(COHERENCE, f"{ctx.who()} read another file's first slot wrong")

    ctx.machine.spawn(truncater, name="truncate")
    ctx.machine.spawn(holder, name="pread-1")
    ctx.machine.spawn(loader, name="pread-0")
    f.end_checks()


def _fits(p: Params) -> str:
    """reclaim-contend's readers each read a page not cached before the race."""
    return "" if p["readers"] < p["pages"] - 6 else "readers must be fewer than pages - 6"


SCENARIOS = (
    Scenario(
        "close-use",
        "a file is closed while another task pwrites through it and maps it",
        _close_use,
        {},
    ),
    Scenario(
        "sync-truncate",
        "fsync and msync's MS_SYNC race a truncate that cuts the file",
        _sync_truncate,
        {"truncate_to": PGSIZE + SLOT},
        limits={"truncate_to": (0, 2 * PGSIZE)},
    ),
    Scenario(
        "expire-remove",
        "the writeback task's passes race a pwrite and a remover of the page",
        _expire_remove,
        {"passes": 2},
        limits={"passes": (1, 3)},
    ),
    Scenario(
        "reclaim-contend",
        "kswapd and two preads' direct reclaim contend for the reclaim mutex",
        _reclaim_contend,
        {"pages": 9, "readers": 2, "remover": 0},
        frames=8,
        limits={"pages": (9, 12), "readers": (1, 3), "remover": (0, 1)},
        valid=_fits,
    ),
    Scenario(
        "reclaim-remove",
        "a pread's direct reclaim removes pages of a file while a user removes it too",
        _reclaim_contend,
        {"pages": 9, "readers": 1, "remover": 1},
        frames=8,
        limits={"pages": (9, 12), "readers": (1, 3), "remover": (0, 1)},
        valid=_fits,
    ),
    Scenario(
        "reclaim-remove-reuse",
        "a direct reclaim chooses victims while a user removes them and reuses their frames",
        _reclaim_remove_reuse,
        {"pages": 10},
        frames=8,
        limits={"pages": (10, 12)},
    ),
    Scenario(
        "truncate-held",
        "a truncate drops a page a pread holds while a pread of another file loads a page",
        _truncate_held,
        {},
    ),
)
