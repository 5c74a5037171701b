"""The ext2 scenarios' judges of the image's blocks (check/scenarios/ext2.py):
no block named by two inodes at any step, a small fsck of a fresh mount at
the end (the files' bytes, the bitmaps and counts against the maps), and
e2fsck -fn.

Rules: a judge at the end mounts the image read-only once the schedule's
own mount is gone (_fsck_at_end unmounts it first).  e2fsck's verdict is a
pure function of the image's bytes, kept per distinct final image
(_e2fsck_problems, a cache its tests clear).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from pathlib import Path

from pagemap import e2fsprogs
from pagemap.check.context import RunContext
from pagemap.check.scenarios.ext2_image import FILES
from pagemap.kernel.fs.ext2 import Ext2FS
from pagemap.kernel.fs.ext2.balloc import test_bit
from pagemap.kernel.fs.ext2.fs import Ext2File
from pagemap.kernel.fs.ext2.inode import Ext2Inode
from pagemap.kernel.fs.ext2.layout import RESIZE_INO
from pagemap.machine import Machine
from pagemap.oracles import ACCOUNTING, DURABILITY, MEMORY_SAFETY, Violation
from pagemap.oracles.accounting import no_leak, quiescent


def _named_blocks(inode: Ext2Inode) -> list[int]:
    """The blocks an inode names in itself right now: its direct blocks and its
    top indirect blocks (the entries inside an indirect block are device
    reads, with scheduling points, so the fsck at the end checks those);
    plain reads, no scheduling point."""
    return [b for b in inode.bmap.i_block if b]


def _no_block_named_twice(ctx: RunContext, inodes: list[Ext2Inode]) -> Callable[[], None]:
    def check() -> None:
        owner: dict[int, int] = {}
        for inode in inodes:
            for blk in _named_blocks(inode):
                if blk in owner and owner[blk] != inode.ino:
                    ctx.fail(
                        MEMORY_SAFETY,
                        f"block {blk} is named by inode {owner[blk]} and by inode {inode.ino} "
                        "at once (freed while still in a map?)",
                    )
                owner[blk] = inode.ino

    return check


def _fsck_lite(
    machine: Machine, image: str, want: dict[str, bytes], names: tuple[str, ...]
) -> list[Violation]:
    """After the schedule, a fresh read-only mount: the files hold what they
    must, and the bitmaps and counts agree with the inodes' maps (e2fsck's
    pass 5, for this image's one group)."""
    fs = machine.mount(image, "r", clock=lambda: 0)
    try:
        problems = [
            Violation(DURABILITY, f"{name} does not hold what was written to it")
            for name, data in want.items()
            if fs.read_file(name) != data
        ]
        return problems + _fsck_checks(fs, names)
    finally:
        fs.unmount()


def _fsck_checks(fs: Ext2FS, names: tuple[str, ...]) -> list[Violation]:
    vol = fs.vol
    geo = vol.geo
    group = vol.groups[0]
    named: dict[int, str] = {}
    problems: list[str] = []
    # The resize inode (7) owns the blocks reserved for growing the group
    # descriptors: named like a file's, so that a leak anywhere is seen.
    owners = [(name, fs.stat(name).ino) for name in names] + [("the resize inode", RESIZE_INO)]
    for name, ino in owners:
        inode = fs.iget(ino)
        data, indirect = inode.bmap.all_blocks()
        for blk in data + indirect:
            if blk in named:
                problems.append(f"block {blk} belongs to {named[blk]} and to {name}")
            named[blk] = name
        if inode.bmap.blocks512 != len(data + indirect) * geo.sectors_per_block:
            problems.append(
                f"{name}: i_blocks is {inode.bmap.blocks512}, not {len(data + indirect) * 2}"
            )
    bh = vol.dev.get_buffer(group.desc.block_bitmap, geo.block_size)
    try:
        bitmap = bh.data
        free = 0
        for blk in range(geo.first_data_block, geo.blocks_count):
            used = test_bit(bitmap, blk - geo.first_data_block)
            free += not used
            if blk in named and not used:
                problems.append(f"block {blk} of {named[blk]} is free in the bitmap")
            if used and blk not in named and not group.is_metadata(geo, blk):
                problems.append(f"block {blk} is used in the bitmap but nobody names it (leaked)")
    finally:
        vol.dev.put_buffer(bh)
    if free != group.desc.free_blocks_count:
        problems.append(
            f"the bitmap has {free} free blocks, the descriptor says {group.desc.free_blocks_count}"
        )
    return [Violation(ACCOUNTING, p) for p in problems]


def _fsck_at_end(
    ctx: RunContext,
    fs: Ext2FS,
    image: str,
    files: list[Ext2File],
    want: dict[str, bytes],
    names: tuple[str, ...] = FILES,
) -> None:
    """The end of a scenario that changes blocks: accounting at quiescence, the
    files closed and the image unmounted, no frame leaked, then the small fsck."""

    def unmount() -> list[Violation]:
        for f in files:
            f.close()
        fs.unmount()
        return [Violation(ACCOUNTING, q) for q in fs.check_quiescent()]

    ctx.at_end(lambda: quiescent(ctx.machine))
    ctx.at_end(unmount)
    ctx.at_end(lambda: no_leak(ctx.machine))
    ctx.at_end(lambda: _fsck_lite(ctx.machine, image, want, names))


class _Image:
    """An image file at the end of a schedule, equal to another with the same
    bytes (compared by their SHA-256): the key of e2fsck's verdict."""

    __slots__ = ("digest", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        self.digest = hashlib.sha256(Path(path).read_bytes()).digest()

    def __hash__(self) -> int:
        return hash(self.digest)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Image) and other.digest == self.digest


@functools.lru_cache(maxsize=1024)
def _e2fsck_problems(image: _Image) -> tuple[str, ...]:
    """e2fsck -fn's findings on an image, none if it is clean.  A pure function
    of the image's bytes (the scenarios stamp a fixed past time, so nothing
    depends on the host's clock), so it runs once per distinct final image:
    schedules that end in the same bytes (ext2-namespace-writeback's 1,109 at
    two preemptions end in one image) share its verdict, and a mutant is found
    after as many schedules, in a fraction of the time (dir-add-puts-first:
    tests/check/test_race_scenarios.py)."""
    result = e2fsprogs.fsck(image.path)
    if result.clean:
        return ()
    return tuple(
        line.strip()
        for line in result.output.splitlines()[1:]
        if line.strip() and not line.startswith("Pass ")
    )


def _e2fsck_clean(image: str) -> list[Violation]:
    problems = _e2fsck_problems(_Image(image))
    if not problems:
        return []
    return [Violation(ACCOUNTING, "e2fsck -fn: " + "; ".join(problems[:6]))]
