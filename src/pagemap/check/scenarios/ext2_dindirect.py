"""ext2-dindirect-truncate (check/scenarios/ext2.py): a file grows into its
double (or triple) indirect block while another's double (or triple)
indirect subtree is freed; e2fsck, and the bytes written read back.

Rules: its image (sparse files that reach past the indirect block) is its
own; DIND and TIND are the first file blocks under the double and triple
indirect blocks, for 1 KiB blocks.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from pagemap import e2fsprogs
from pagemap.check.context import RunContext
from pagemap.check.scenario import Params
from pagemap.check.scenarios.ext2_fsck import _e2fsck_clean, _no_block_named_twice
from pagemap.check.scenarios.ext2_image import BS, GROW, NOW, _mount
from pagemap.oracles import ACCOUNTING, DURABILITY, Violation
from pagemap.oracles.accounting import no_leak, quiescent

APB = BS // 4  # block numbers an indirect block holds
DIND = 12 + APB  # the first file block under the double indirect block
TIND = DIND + APB * APB  # the first under the triple indirect block


@functools.cache
def _deep_image() -> bytes:
    """An image with sparse files that reach past the indirect block: /d, one
    block and a hole up to the double indirect block's first; /e, a block and
    two under its double indirect block; /t, a block and one under its triple
    indirect block."""
    with tempfile.TemporaryDirectory(prefix="pagemap-ext2-scenario-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        with open(src / "d", "wb") as f:
            f.write(b"D" * BS)
            f.truncate(DIND * BS)
        for name, blocks in (("e", (0, DIND, DIND + 1)), ("t", (0, TIND))):
            with open(src / name, "wb") as f:
                for blk in blocks:
                    f.seek(blk * BS)
                    f.write(name.upper().encode() * BS)
        image = Path(tmp) / "fs.img"
        e2fsprogs.mkfs(image, 256 * 1024, BS, source=src, inodes=32)
        return image.read_bytes()


def _dindirect_truncate(ctx: RunContext, p: Params) -> None:
    # /d grows past its indirect block's reach: its append allocates a double
    # indirect block, an indirect block under it and the data block, while /e
    # is cut to `truncate_to` (by default nothing): its double indirect
    # subtree is freed, each indirect block forgotten by the device cache
    # before it can be reused.  With deep=3 the same one level down: /d's
    # write lands past the double indirect block's reach (a triple indirect
    # block and three below it) while /t's triple indirect subtree is freed.
    # Both files' blocks come from the one group, so /d's allocator looks
    # first at the blocks the truncate frees.  At every step no
    # block is named by both inodes; at the end, unmounted, e2fsck finds
    # nothing, and the bytes written are read back.
    path, fs = _mount(ctx, _deep_image(), NOW)
    deep = p["deep"] == 3
    cut_name = "/t" if deep else "/e"
    fd, fe = fs.open("/d", "r+"), fs.open(cut_name, "r+")
    ctx.every_step(_no_block_named_twice(ctx, [fd.inode, fe.inode]))
    at = (TIND if deep else DIND) * BS
    cut = p["truncate_to"]
    cut_byte = cut_name[1:].upper().encode()

    ctx.machine.spawn(fd.pwrite, b"d" * GROW, at, name="append-d")
    ctx.machine.spawn(fe.truncate, cut, name=f"truncate-{cut_name[1:]}")

    def unmount() -> list[Violation]:
        fd.close()
        fe.close()
        fs.unmount()
        return [Violation(ACCOUNTING, q) for q in fs.check_quiescent()]

    def read_back() -> list[Violation]:
        ro = ctx.machine.mount(path, "r", clock=lambda: NOW)
        try:
            d, e = ro.open("/d"), ro.open(cut_name)
            problems = []
            if d.size != at + GROW or d.pread(GROW, at) != b"d" * GROW:
                problems.append(Violation(DURABILITY, f"/d lost its append at {at}"))
            elif d.pread(BS, 0) != b"D" * BS:
                problems.append(Violation(DURABILITY, "/d lost its first block"))
            elif e.size != cut or e.pread(BS, 0) != cut_byte * min(BS, cut):
                problems.append(Violation(DURABILITY, f"{cut_name} is not its first {cut} bytes"))
            d.close()
            e.close()
            return problems
        finally:
            ro.unmount()

    ctx.at_end(lambda: quiescent(ctx.machine))
    ctx.at_end(unmount)
    ctx.at_end(lambda: no_leak(ctx.machine))
    ctx.at_end(lambda: _e2fsck_clean(path))
    ctx.at_end(read_back)
