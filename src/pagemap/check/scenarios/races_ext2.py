"""ext2 races the census once found no scenario for (issue 18, races reached).

As check/scenarios/races.py, for the ext2 filesystem: each scenario races a
function `pagemap check --coverage` listed as unraced, named below and
asserted by tests/check/test_race_scenarios.py.  Each schedule mounts a copy
of the image ext2_image.py makes (e2fsprogs needed) and ends, unmounted, with the
small fsck (bitmaps and counts against the maps) and e2fsck -fn.

- ext2-close-unlinked: an unlinked file's last close (which frees the inode
  and its blocks, Ext2FS._maybe_free) races a pwrite through that very file
  that was let in before the close.
- ext2-truncate-write: a truncate of a file races a pwrite into it (the
  inode's lock, Ext2Inode.truncate) and the writeback of a store into its
  hole, which allocates under the block map's lock while the truncate
  applies its cut under the same lock (BlockMap._apply).
"""

from __future__ import annotations

import functools
import re
import tempfile
from pathlib import Path

from pagemap import e2fsprogs
from pagemap.check.context import RunContext
from pagemap.check.scenario import Params, Scenario
from pagemap.check.scenarios.ext2_dindirect import DIND, _dindirect_truncate
from pagemap.check.scenarios.ext2_fsck import _e2fsck_clean, _fsck_at_end
from pagemap.check.scenarios.ext2_image import (
    A_SIZE,
    B_SIZE,
    BS,
    FILES,
    J_SIZE,
    NOW,
    Ext2ShadowFile,
    _mount,
)
from pagemap.check.shadow import SLOT, initial_bytes
from pagemap.hw.memory import PGSIZE
from pagemap.kernel.errors import AlreadyClosed, BusError
from pagemap.kernel.fs.ext2.errors import NoSpace
from pagemap.kernel.fs.ext2.fs import Ext2File
from pagemap.kernel.mman import MAP_SHARED, PROT_READ, PROT_WRITE
from pagemap.oracles import ACCOUNTING, COHERENCE, Violation

GROW = 600

# -- ext2-close-unlinked --------------------------------------------------------------


def _close_unlinked(ctx: RunContext, p: Params) -> None:
    # /a is open and unlinked before the race: an orphan, freed at its last
    # close.  One task pwrites through the file, past its end (a new block);
    # the other closes it, the last close, which frees the inode and every
    # block it names.  A pwrite that began after close returned is refused
    # (EBADF); one that was let in must not leave a block to a freed inode,
    # nor a freed inode in use: at the end the bitmaps agree with the live
    # files' maps and e2fsck finds nothing.
    image, fs = _mount(ctx, now=NOW)  # the freed inode's dtime must not be 0
    fa = fs.open("/a", "r+")
    fa.pread(1, 0)
    fs.unlink("/a")
    closed = [False]

    proc = ctx.machine.process()

    def writer() -> None:
        after = closed[0]
        try:
            if p["mmap"]:
                base = proc.mmap(2 * PGSIZE, PROT_READ | PROT_WRITE, MAP_SHARED, file=fa)
                proc.store(base + PGSIZE, b"y" * SLOT)  # page 1: past the end, a bus error
            else:
                fa.pwrite(b"y" * GROW, p["at"])
        except AlreadyClosed:
            return
        except BusError:
            pass
        if after:
            ctx.fail(COHERENCE, f"{ctx.who()}'s call went through a file closed before it began")

    def closer() -> None:
        fa.close()
        closed[0] = True

    ctx.machine.spawn(writer, name="pwrite")
    ctx.machine.spawn(closer, name="last-close")

    def exit_all() -> list[Violation]:
        proc.exit()  # the mapping's end, the orphan's last use: it is freed
        return []

    ctx.at_end(exit_all)
    _fsck_at_end(ctx, fs, image, [], {"/b": b"B" * B_SIZE}, tuple(n for n in FILES if n != "/a"))
    ctx.at_end(lambda: _e2fsck_clean(image))


# -- ext2-truncate-write --------------------------------------------------------------


def _truncate_write(ctx: RunContext, p: Params) -> None:
    # /w, made before the race: page 0 and page 2 all blocks, page 1 a hole,
    # stored into through a shared mapping (dirty, no block under it yet).
    # One task pwrites into page 0 (the inode's lock), then writes page 1
    # back: writepage allocates its first block and splices it in under the
    # block map's lock, holding page 1's lock but not the inode's.  The
    # other cuts /w inside page 2: it holds page 2's lock and frees the
    # blocks past the cut, applying the cut under the map's lock.  The
    # shadow's bytes read back, the small fsck and e2fsck find nothing.
    image, fs = _mount(ctx)
    data = initial_bytes(3)
    with fs.create("/w") as w:
        w.pwrite(data[:PGSIZE], 0)
        w.pwrite(data[2 * PGSIZE :], 2 * PGSIZE)
    f = Ext2ShadowFile(ctx, fs, image, "/w", data[:PGSIZE] + bytes(PGSIZE) + data[2 * PGSIZE :])
    proc = ctx.machine.process()
    base = f.map(proc, 3, PROT_READ | PROT_WRITE, MAP_SHARED)
    f.store(proc, base + PGSIZE + SLOT)  # into the hole's first block
    f.pm.collect_mapped_dirty(1, 1)  # the D bit to the page, as fsync does

    def write_and_write_back() -> None:
        f.pwrite(SLOT)
        f.pm.writeback(1, 1)  # writepage allocates page 1's first block
        f.load(proc, base + PGSIZE + SLOT)

    def truncater() -> None:
        f.truncate(p["truncate_to"])

    ctx.machine.spawn(write_and_write_back, name="pwrite-writeback")
    ctx.machine.spawn(truncater, name="truncate")
    f.end_checks()
    ctx.at_end(lambda: _e2fsck_clean(image))


# -- ext2-forget-writeback ----------------------------------------------------------------


def _forget_writeback(ctx: RunContext, p: Params) -> None:
    # /j (an indirect block naming two blocks, its last page cached, so the
    # indirect block's buffer is cached and dirtied) is cut to nothing: its
    # indirect block is freed and its buffer forgotten (bforget), while the
    # device's writeback evicts the device pages that hold it.  A forgotten
    # buffer is never written; the small fsck and e2fsck find nothing.
    image, fs = _mount(ctx)
    fj = fs.open("/j", "r+")
    fj.pread(1, J_SIZE - 1)  # read through the indirect block: its buffer cached
    ind = fj.inode.bmap.i_block[12]
    dev = fs.vol.dev
    first = ind * BS // PGSIZE

    def device_writeback() -> None:
        dev.mapping.remove_contig(first, 1)

    ctx.machine.spawn(fj.truncate, 0, name="truncate-j")
    ctx.machine.spawn(device_writeback, name="device-writeback")
    _fsck_at_end(ctx, fs, image, [fj], {"/j": b""})
    ctx.at_end(lambda: _e2fsck_clean(image))


# -- ext2-last-block ------------------------------------------------------------------------


def _free_blocks(image: Path) -> int:
    out = e2fsprogs.debugfs(image, "stats").decode()
    found = re.search(r"^Free blocks:\s+(\d+)", out, re.M)
    assert found is not None, out
    return int(found.group(1))


@functools.cache
def _full_image() -> bytes:
    """/a and /b as ext2_image.py's image has them, and /f filling every block but
    one (made once per process: a second mkfs with /f sized by the first)."""
    with tempfile.TemporaryDirectory(prefix="pagemap-ext2-scenario-") as tmp:
        fill = 0
        for attempt in range(4):
            src = Path(tmp) / f"src{attempt}"
            src.mkdir()
            (src / "a").write_bytes(b"A" * A_SIZE)
            (src / "b").write_bytes(b"B" * B_SIZE)
            if fill:
                (src / "f").write_bytes(b"f" * (fill * BS))
            image = Path(tmp) / f"fs{attempt}.img"
            e2fsprogs.mkfs(image, 256 * 1024, BS, source=src, inodes=32)
            free = _free_blocks(image)
            if fill and free == 1:
                return image.read_bytes()
            # /f's blocks, and its indirect block (it passes twelve blocks).
            fill += free - 1 - (0 if fill else 1)
    raise RuntimeError("mke2fs: could not leave exactly one free block")


def _last_block(ctx: RunContext, p: Params) -> None:
    # One free block left in the filesystem (its one group).  Two writers
    # each append a block to their own file: both may find the group's
    # count non-zero before its lock, one takes the block under the lock,
    # the other finds the count zero there and gets ENOSPC, its file
    # unchanged.  At the end the winner's bytes read back, the loser's file
    # is as it was, and the small fsck and e2fsck find nothing.
    image, fs = _mount(ctx, _full_image(), NOW)
    fa, fb = fs.open("/a", "r+"), fs.open("/b", "r+")
    want = {"/a": b"A" * A_SIZE, "/b": b"B" * B_SIZE}
    refused: list[str] = []

    def append(f: Ext2File, name: str, at: int) -> None:
        data = name[1].encode() * GROW
        try:
            f.pwrite(data, at)
        except NoSpace:
            refused.append(name)
            return
        want[name] = want[name] + bytes(at - len(want[name])) + data

    ctx.machine.spawn(append, fa, "/a", BS, name="append-a")
    ctx.machine.spawn(append, fb, "/b", 3 * BS, name="append-b")

    def one_refused() -> list[Violation]:
        if len(refused) == 1:
            return []
        return [Violation(ACCOUNTING, f"one free block, two appends: {refused} got ENOSPC")]

    ctx.at_end(one_refused)
    _fsck_at_end(ctx, fs, image, [fa, fb], want, ("/", "/lost+found", "/a", "/b", "/f"))
    ctx.at_end(lambda: _e2fsck_clean(image))


# -- ext2-indirect-hole ---------------------------------------------------------------------

H_BLOCKS = 16  # /h: four pages; blocks 0 and 13 written, the indirect block names 13


def _indirect_hole(ctx: RunContext, p: Params) -> None:
    # /h, made before the race: block 0 and block 13 hold bytes (so its
    # indirect block exists, naming 13 alone), block 12 and the rest are
    # holes.  Two allocators race for block 12, a hole under the existing
    # indirect block: a store through a shared mapping into page 3, written
    # back (writepage allocates), and a pwrite into the same block.  Each
    # walks down the indirect block, finds the slot empty, takes a block from
    # the bitmap and splices it into the indirect block under the map's lock
    # if the slot is still empty; the loser gives its block back and walks
    # again.  Both writes land in the one block; the shadow reads back,
    # e2fsck finds nothing.
    image, fs = _mount(ctx)
    data = bytearray(H_BLOCKS * BS)
    data[:BS] = b"h" * BS
    data[13 * BS : 14 * BS] = b"H" * BS
    with fs.create("/h") as h:
        h.pwrite(data[:BS], 0)
        h.pwrite(data[13 * BS : 14 * BS], 13 * BS)
        h.truncate(H_BLOCKS * BS)
    f = Ext2ShadowFile(ctx, fs, image, "/h", bytes(data))
    proc = ctx.machine.process()
    base = f.map(proc, 4, PROT_READ | PROT_WRITE, MAP_SHARED)
    f.load(proc, base + 3 * PGSIZE)  # page 3 mapped before the race

    def store_and_write_back() -> None:
        f.store(proc, base + 3 * PGSIZE + SLOT)  # block 12, a hole
        f.pm.collect_mapped_dirty(3, 1)
        f.pm.writeback(3, 1)  # writepage allocates block 12
        f.load(proc, base + 3 * PGSIZE + SLOT)

    def writer() -> None:
        f.pwrite(12 * BS + p["slot"] * SLOT)  # block 12: write() allocates it

    ctx.machine.spawn(store_and_write_back, name="store-writeback")
    ctx.machine.spawn(writer, name="pwrite")
    f.end_checks()
    ctx.at_end(lambda: _e2fsck_clean(image))


SCENARIOS = (
    Scenario(
        "ext2-close-unlinked",
        "the last close of an unlinked ext2 file races a pwrite through it",
        _close_unlinked,
        {"at": A_SIZE, "mmap": 0},
        frames=24,
        limits={"at": (0, 4 * BS), "mmap": (0, 1)},
    ),
    Scenario(
        "ext2-truncate-write",
        "an ext2 truncate races a pwrite into the file and the writeback of a store "
        "into its hole, which allocates under the block map's lock",
        _truncate_write,
        {"truncate_to": 2 * PGSIZE + BS + SLOT},
        frames=24,
        limits={"truncate_to": (2 * PGSIZE + SLOT, 3 * PGSIZE - SLOT)},
    ),
    Scenario(
        "ext2-forget-writeback",
        "an ext2 truncate frees an indirect block and forgets its buffer while the "
        "device's writeback evicts the page holding it",
        _forget_writeback,
        {},
        frames=24,
    ),
    Scenario(
        "ext2-last-block",
        "two ext2 writers race for the filesystem's last free block",
        _last_block,
        {},
        frames=24,
    ),
    Scenario(
        "ext2-indirect-hole",
        "two allocators race for one hole under an existing ext2 indirect block: a pwrite "
        "into it, and the writeback of a store through a mapping into it",
        _indirect_hole,
        {"slot": 2},
        frames=24,
        limits={"slot": (2, BS // SLOT - 1)},
    ),
    # ext2-dindirect-truncate's shape with /e cut inside its double indirect
    # subtree rather than freeing it whole: the indirect block under it keeps
    # its first entry and loses the second (BlockMap's partial cut at level 1).
    Scenario(
        "ext2-dindirect-cut",
        "an ext2 file grows past its indirect block while another is cut inside its "
        "double indirect subtree",
        _dindirect_truncate,
        {"deep": 2, "truncate_to": (DIND + 1) * BS},
        frames=24,
        limits={"deep": (2, 2), "truncate_to": (DIND * BS + 1, (DIND + 1) * BS)},
    ),
)
