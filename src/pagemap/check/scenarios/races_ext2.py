"""ext2 races the census once found no scenario for (issue 18, races reached).

As check/scenarios/races.py, for the ext2 filesystem: each scenario races a
function `pagemap check --coverage` listed as unraced, named below and
asserted by tests/check/test_race_scenarios.py.  Each schedule mounts a copy
of the image ext2.py makes (e2fsprogs needed) and ends, unmounted, with the
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

import os

from pagemap.check.context import RunContext
from pagemap.check.scenario import Params, Scenario
from pagemap.check.scenarios.ext2 import (
    A_SIZE,
    B_SIZE,
    BS,
    FILES,
    NOW,
    Ext2ShadowFile,
    _e2fsck_clean,
    _fsck_at_end,
    _image,
    _mount,
)
from pagemap.check.shadow import SLOT, initial_bytes
from pagemap.hw.memory import PGSIZE
from pagemap.kernel.errors import AlreadyClosed, BusError
from pagemap.kernel.mman import MAP_SHARED, PROT_READ, PROT_WRITE
from pagemap.oracles import COHERENCE, Violation

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
    image = os.path.join(ctx.scratch(), "ext2.img")
    with open(image, "wb") as img:
        img.write(_image())
    # A clock that is not zero: the freed inode's dtime must not be 0.
    fs = ctx.machine.mount(image, "rw", clock=lambda: NOW)
    ctx.cleanup(fs.vol.dev.io.close)
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
)
