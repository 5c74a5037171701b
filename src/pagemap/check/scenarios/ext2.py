"""ext2 scenarios: the filesystem's own races, on a tiny image per schedule.

Each schedule copies one small image (made once by mke2fs, needing
e2fsprogs) to a scratch file and mounts it on the schedule's fresh Machine.

- ext2-store-remove: stores through a shared mapping of an ext2 file race
  removal of its pages; one page is a hole, so removal's writeback allocates
  its block.  The ShadowFile oracles (memory safety and coherence at every
  access) apply; at the end the image is unmounted and the file read back
  must equal the shadow.
- ext2-append-truncate: two writers extend two files of one block group,
  one of them truncating its file first, so that one allocates while the
  other frees.  At every step no block may be named by two inodes' maps; at
  the end the files hold their bytes, and the bitmaps and counts agree with the maps (a small
  fsck: every named block marked used, every used block named or metadata,
  the descriptors' free counts, each inode's i_blocks).
- ext2-indirect-truncate: one file grows past its direct blocks (allocating
  an indirect block) while another is truncated inside its indirect block,
  then to nothing (freeing the indirect block and what it names); the same
  small fsck.
- ext2-unlink-reuse: an open file with a dirty page is unlinked (an orphan
  until its last close) while its page is written back and it is closed, and
  another task creates a file that may be given the blocks it frees; the
  same small fsck, and the new file must hold its bytes.
- ext2-hole-race: two allocators race for one block of a hole (a pwrite in
  write(), a mapped store's writeback in writepage); the ShadowFile oracles,
  the file read back, and e2fsck.
- ext2-namespace-writeback: create (filling the root's directory block),
  rename and unlink race the device cache's writeback and removal of the
  pages they change; e2fsck, and the names a fresh mount lists.
- ext2-fsync-fsync: a pwrite grows a file and its task fsyncs it while
  another task fsyncs it, so that two write_inodes copy its size while it
  changes; the file's bytes read back after the unmount (durability), the
  small fsck and e2fsck.
- ext2-create-create: two tasks create a file each in one directory at
  once, both entries in the same gap of its block (or each in a second
  block); e2fsck, and the names a fresh mount lists.
- ext2-dindirect-truncate: a file grows into its double (or triple) indirect
  block while another's double (or triple) indirect subtree is freed;
  e2fsck, and the bytes written read back.
- ext2-truncate-read: a truncate cuts a file's last page partway and drops
  the page past it while a pread and loads through a shared mapping race
  it; no byte read is stale once the truncate returned; e2fsck.

The image and its mount are in ext2_image.py, the judges of its blocks (the
small fsck, e2fsck) in ext2_fsck.py, and the two scenarios with images of
their own in ext2_namespace.py and ext2_dindirect.py; SCENARIOS here is the
family's registry, in its order.

The scenarios that end with e2fsck (`e2fsck -fn`, exit 0) stamp changes with
a fixed time that is neither zero (a deleted inode's dtime) nor in the future.
"""

from __future__ import annotations

from pagemap.check.context import RunContext
from pagemap.check.scenario import Params, Scenario
from pagemap.check.scenarios.ext2_dindirect import _dindirect_truncate
from pagemap.check.scenarios.ext2_fsck import (
    _e2fsck_clean,
    _fsck_at_end,
    _fsck_lite,
    _no_block_named_twice,
)
from pagemap.check.scenarios.ext2_fsck import _e2fsck_problems as _e2fsck_problems
from pagemap.check.scenarios.ext2_image import (
    A_SIZE,
    B_SIZE,
    BS,
    FILES,
    GROW,
    I_SIZE,
    J_SIZE,
    NOW,
    Ext2ShadowFile,
    _mount,
)
from pagemap.check.scenarios.ext2_image import image_available as image_available
from pagemap.check.scenarios.ext2_namespace import (
    CREATE,
    FILLERS,
    RENAME,
    UNLINK,
    _create_create,
    _namespace_writeback,
)
from pagemap.check.shadow import SLOT, initial_bytes
from pagemap.hw.memory import PGSIZE
from pagemap.kernel.errors import BusError
from pagemap.kernel.mman import MAP_SHARED, PROT_READ, PROT_WRITE
from pagemap.oracles import ACCOUNTING, COHERENCE, Violation
from pagemap.oracles.accounting import no_leak, quiescent

# -- ext2-store-remove -----------------------------------------------------------------


def _store_remove(ctx: RunContext, p: Params) -> None:
    image, fs = _mount(ctx)
    f = Ext2ShadowFile(ctx, fs, image, "/m", initial_bytes(1) + bytes(PGSIZE))
    proc = ctx.machine.process()
    base = f.map(proc, 2, PROT_READ | PROT_WRITE, MAP_SHARED)
    f.store(proc, base)  # page 0 dirty through the mapping before the race
    f.load(proc, base + PGSIZE)  # the hole, mapped (as zeros) before the race

    def storer() -> None:
        for _ in range(p["rounds"]):
            f.store(proc, base + PGSIZE + SLOT)  # into the hole: a block at writeback
        f.load(proc, base + PGSIZE + SLOT)

    def remover() -> None:
        f.pm.remove_contig(0, 2)
        f.no_stale_translation()

    ctx.machine.spawn(storer, name="store")
    ctx.machine.spawn(remover, name="remover")
    f.end_checks()


# -- ext2-hole-race -------------------------------------------------------------------------


def _hole_race(ctx: RunContext, p: Params) -> None:
    # Two allocators race for one file block: a store through a shared
    # mapping into the hole of /m (page 1) is written back, and writepage
    # allocates the block under it (without the inode lock, which only
    # write() and truncate take), while a pwrite into the same block
    # allocates it in write().  Each walks the map, finds the slot empty,
    # takes a block from the bitmap, and splices it in under the map lock if
    # the slot is still empty; the loser gives its block back and walks
    # again, finding the winner's.  Both writes must land in the one block,
    # no block may leak or be named twice: at the end, unmounted, the file
    # reads back as the shadow says and e2fsck finds nothing.
    image, fs = _mount(ctx)
    f = Ext2ShadowFile(ctx, fs, image, "/m", initial_bytes(1) + bytes(PGSIZE))
    proc = ctx.machine.process()
    base = f.map(proc, 2, PROT_READ | PROT_WRITE, MAP_SHARED)
    f.load(proc, base + PGSIZE)  # the hole, mapped (as zeros) before the race

    def store_and_write_back() -> None:
        f.store(proc, base + PGSIZE + SLOT)  # into the hole's first block
        f.pm.collect_mapped_dirty(1, 1)  # the D bit to the page, as fsync does
        f.pm.writeback(1, 1)  # writepage allocates the block
        f.load(proc, base + PGSIZE + SLOT)

    def writer() -> None:
        f.pwrite(PGSIZE + p["slot"] * SLOT)  # the same block: write() allocates it

    ctx.machine.spawn(store_and_write_back, name="store-writeback")
    ctx.machine.spawn(writer, name="pwrite")
    f.end_checks()
    ctx.at_end(lambda: _e2fsck_clean(image))


# -- ext2-append-truncate ------------------------------------------------------------------


def _append_truncate(ctx: RunContext, p: Params) -> None:
    image, fs = _mount(ctx)
    fa, fb = fs.open("/a", "r+"), fs.open("/b", "r+")
    # Cached before the race: the race is about blocks, not about loading pages.
    fa.pread(1, 0)
    fb.pread(1, 0)
    cut = p["truncate_to"]
    ctx.every_step(_no_block_named_twice(ctx, [fa.inode, fb.inode]))

    def truncate_and_append_b() -> None:
        fb.truncate(cut)
        fb.pwrite(b"b" * GROW, cut)

    # Two tasks, not three: the checker's DFS must be able to finish.  The
    # races that matter are both here: /a's allocation against /b's freeing,
    # and the two allocations against each other in the one group.
    ctx.machine.spawn(fa.pwrite, b"a" * GROW, A_SIZE, name="append-a")
    ctx.machine.spawn(truncate_and_append_b, name="truncate-append-b")

    want = {"/a": b"A" * A_SIZE + b"a" * GROW, "/b": b"B" * cut + b"b" * GROW}

    _fsck_at_end(ctx, fs, image, [fa, fb], want)


# -- ext2-unlink-reuse -----------------------------------------------------------------


def _unlink_reuse(ctx: RunContext, p: Params) -> None:
    # /a is unlinked while still open with a dirty page: an orphan, whose
    # blocks stay its own until its last close.  It grows by a block, its
    # pages are written back (removal) and it is closed while another task
    # creates /c, whose blocks may be the ones /a frees: blocks freed before
    # the last close would be lost to a deleted inode or written into /c.
    image, fs = _mount(ctx)
    fa = fs.open("/a", "r+")
    fa.pwrite(b"x" * GROW, 0)  # dirty and cached before the race
    size_c = p["c_bytes"]

    def unlink_and_create() -> None:
        fs.unlink("/a")
        with fs.create("/c") as fc:
            fc.pwrite(b"c" * size_c, 0)

    def write_back_and_close() -> None:
        fa.pwrite(b"y" * GROW, A_SIZE)  # an orphan may still grow: a block for it
        fa.mapping.remove_contig(0, 1)
        fa.close()

    ctx.machine.spawn(unlink_and_create, name="unlink-create")
    ctx.machine.spawn(write_back_and_close, name="writeback-close")

    want = {"/b": b"B" * B_SIZE, "/c": b"c" * size_c}
    _fsck_at_end(ctx, fs, image, [], want, (*(n for n in FILES if n != "/a"), "/c"))


# -- ext2-indirect-truncate ---------------------------------------------------------------


def _indirect_truncate(ctx: RunContext, p: Params) -> None:
    # /i grows past its twelve direct blocks (an indirect block, then a data
    # block named in it) while /j is cut twice: inside its indirect block
    # (one entry dropped), then to `truncate_to` (by default nothing: its
    # indirect block goes too).  /j's blocks follow /i's on the image, so
    # they are the ones /i's allocation looks at first, in either role.
    image, fs = _mount(ctx)
    fi, fj = fs.open("/i", "r+"), fs.open("/j", "r+")
    fi.pread(1, 0)
    fj.pread(1, J_SIZE - 1)  # /j's last page cached, read through its indirect block
    cut = p["truncate_to"]
    ctx.every_step(_no_block_named_twice(ctx, [fi.inode, fj.inode]))
    ctx.machine.spawn(fi.pwrite, b"i" * GROW, I_SIZE, name="append-i")

    def truncate_j() -> None:
        fj.truncate(J_SIZE - BS)  # inside the indirect block: it is cut, not freed
        fj.truncate(cut)  # the rest, the indirect block with it

    ctx.machine.spawn(truncate_j, name="truncate-j")

    want = {"/i": b"I" * I_SIZE + b"i" * GROW, "/j": b"J" * cut}

    _fsck_at_end(ctx, fs, image, [fi, fj], want)


# -- ext2-fsync-fsync ------------------------------------------------------------------------


def _fsync_fsync(ctx: RunContext, p: Params) -> None:
    # /a grows by a pwrite past its end, which its task then fsyncs, while
    # another task fsyncs it: each fsync ends in write_inode, which clears
    # the inode's `dirty` and copies its size into the inode table.  Whatever
    # the order, the size the pwrite set must reach the image: the bytes read
    # back after the unmount.  Once failed on the real kernel (inode.py's
    # write_inode read the size before the map lock: the other fsync read the
    # old size, the grower's fsync wrote the new one and cleared `dirty`, and
    # the other then wrote the old size over it).  Two tasks, not a third for
    # the pwrite: the same race in a tenth of the schedules.
    image, fs = _mount(ctx, now=NOW)
    fa = fs.open("/a", "r+")
    fa.pread(1, 0)

    def grow_and_sync() -> None:
        fa.pwrite(b"a" * GROW, A_SIZE)
        fa.fsync()

    ctx.machine.spawn(grow_and_sync, name="append")
    ctx.machine.spawn(fa.fsync, name="fsync")
    want = {"/a": b"A" * A_SIZE + b"a" * GROW, "/b": b"B" * B_SIZE}
    _fsck_at_end(ctx, fs, image, [fa], want)
    ctx.at_end(lambda: _e2fsck_clean(image))


# -- ext2-truncate-read ---------------------------------------------------------------------


def _truncate_read(ctx: RunContext, p: Params) -> None:
    # /m (page 0 all blocks, page 1 a hole) is cut to `truncate_to`: page 0
    # is cut partway (its bytes past the end zeroed, its blocks past it
    # freed) and page 1 goes.  Racing it, one task preads across the new end,
    # and another loads page 1 through a shared mapping of /m (not cached
    # before the race: its fault's readpage races the truncate).  What must
    # hold: a read returns the file's bytes, or zeros past the new end (a read
    # that began before the cut), or stops at the new end; once the truncate
    # has returned, a pread stops at the new end and a load of page 1 is a bus
    # error, and it still is when the race is over (a fault that read the
    # old size must not leave page 1 mapped).  At the end, unmounted: /m is its
    # first `truncate_to` bytes, the small fsck and e2fsck find nothing.
    image, fs = _mount(ctx)
    fm = fs.open("/m", "r+")
    cut = p["truncate_to"]
    old = initial_bytes(1) + bytes(PGSIZE)
    fm.pread(1, 0)  # page 0 cached before the race
    proc = ctx.machine.process()
    base = proc.mmap(2 * PGSIZE, PROT_READ, MAP_SHARED, file=fm, offset=0)
    done = [False]  # the truncate has returned

    def judge(what: str, off: int, got: bytes, after: bool) -> None:
        for i, byte in enumerate(got):
            pos = off + i
            if byte == old[pos] and not (after and pos >= cut):
                continue
            if byte == 0 and pos >= cut:
                continue
            ctx.fail(
                COHERENCE,
                f"{ctx.who()}'s {what} got {byte:#04x} at offset {pos} of /m, cut to {cut}"
                + (" before it began" if after else ""),
            )
            return

    def truncater() -> None:
        fm.truncate(cut)
        done[0] = True

    def reader() -> None:
        after = done[0]
        off = cut - SLOT
        got = fm.pread(2 * SLOT, off)
        if after and len(got) > cut - off:
            ctx.fail(COHERENCE, f"{ctx.who()}'s pread read past {cut}, the end it was cut to")
        judge("pread", off, got, after)

    def mapper() -> None:
        after = done[0]
        try:
            got = proc.load(base + PGSIZE, SLOT)
        except BusError:
            pass
        else:
            if after:
                ctx.fail(
                    COHERENCE,
                    f"{ctx.who()} loaded page 1 of /m through its mapping after /m was cut "
                    f"to {cut}: no bus error",
                )
            judge("load of page 1", PGSIZE, got, after)

    ctx.machine.spawn(truncater, name="truncate")
    ctx.machine.spawn(reader, name="pread")
    ctx.machine.spawn(mapper, name="load")

    def no_translation_past_the_end() -> list[Violation]:
        try:
            proc.load(base + PGSIZE, SLOT)
        except BusError:
            return []
        return [Violation(COHERENCE, f"page 1 of /m is still mapped after /m was cut to {cut}")]

    def unmount() -> list[Violation]:
        for q in ctx.machine.procs:
            q.exit()
        fm.close()
        fs.unmount()
        return [Violation(ACCOUNTING, q) for q in fs.check_quiescent()]

    ctx.at_end(lambda: quiescent(ctx.machine))
    ctx.at_end(no_translation_past_the_end)
    ctx.at_end(unmount)
    ctx.at_end(lambda: no_leak(ctx.machine))
    ctx.at_end(lambda: _fsck_lite(ctx.machine, image, {"/m": old[:cut]}, FILES))
    ctx.at_end(lambda: _e2fsck_clean(image))


SCENARIOS = (
    Scenario(
        "ext2-store-remove",
        "stores through a mapping of an ext2 file race removal; a hole is allocated at writeback",
        _store_remove,
        {"rounds": 1},
        frames=24,
        limits={"rounds": (1, 4)},
    ),
    Scenario(
        "ext2-append-truncate",
        "two writers extend two ext2 files of one group, one truncating its file first",
        _append_truncate,
        {"truncate_to": 1000},
        frames=24,
        limits={"truncate_to": (0, B_SIZE)},
    ),
    Scenario(
        "ext2-unlink-reuse",
        "an open file is unlinked with a dirty page; its writeback and last close race "
        "the creation of a file that may reuse its blocks",
        _unlink_reuse,
        {"c_bytes": 1500},
        frames=24,
        limits={"c_bytes": (1, 8 * BS)},
    ),
    Scenario(
        "ext2-indirect-truncate",
        "one ext2 file grows into its indirect block while another's indirect block is freed",
        _indirect_truncate,
        {"truncate_to": 0},
        frames=24,
        limits={"truncate_to": (0, J_SIZE - BS)},
    ),
    Scenario(
        "ext2-namespace-writeback",
        "create (filling a directory block), rename and unlink race the device cache's "
        "writeback and removal of the blocks they change",
        _namespace_writeback,
        {"ops": CREATE | RENAME | UNLINK, "unlink": 0, "rounds": 1},
        frames=24,
        limits={"ops": (1, 7), "unlink": (0, len(FILLERS) - 1), "rounds": (1, 3)},
    ),
    Scenario(
        "ext2-fsync-fsync",
        "an ext2 file grown by a pwrite and fsynced races another fsync of it",
        _fsync_fsync,
        {},
        frames=24,
    ),
    Scenario(
        "ext2-create-create",
        "two ext2 creates race to add their entries to one directory block",
        _create_create,
        {"long": 0},
        frames=24,
        limits={"long": (0, 1)},
    ),
    Scenario(
        "ext2-dindirect-truncate",
        "an ext2 file grows past its indirect block (into a double, or triple, indirect "
        "block) while another's double (or triple) indirect subtree is freed",
        _dindirect_truncate,
        {"deep": 2, "truncate_to": 0},
        frames=24,
        limits={"deep": (2, 3), "truncate_to": (0, BS)},
    ),
    Scenario(
        "ext2-hole-race",
        "two allocators race for one block of an ext2 hole: a pwrite into it, and the "
        "writeback of a store through a mapping into it",
        _hole_race,
        {"slot": 2},
        frames=24,
        limits={"slot": (2, BS // SLOT - 1)},
    ),
    Scenario(
        "ext2-truncate-read",
        "an ext2 truncate cuts a file's last page partway and drops a whole page while a "
        "pread and loads through a shared mapping race it",
        _truncate_read,
        {"truncate_to": PGSIZE // 2 + 100},
        frames=24,
        limits={"truncate_to": (SLOT, PGSIZE - SLOT)},
    ),
)
