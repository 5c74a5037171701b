"""ext2-namespace-writeback (check/scenarios/ext2.py): create, rename and unlink
race the device cache's writeback and removal of the directory, inode-table
and bitmap blocks they change; e2fsck, and the names a fresh mount lists.

ext2-create-create: two tasks create a file each in the one directory at
once.  Each finds room for its entry in the same gap of the root's block
(dir.py's add: the block parsed, then its buffer got again, a wait, before
the entry is written), so only the namespace lock Ext2FS.create takes keeps
the second from writing over the first: without it (the lock mutant
`kernel/fs/ext2/fs.py:Ext2FS.create:self._ns('create')`) a name is lost and
its inode left allocated with no name.  e2fsck, and the names a fresh mount
lists (durability).

Rules: its image (a root directory whose one block is nearly full) is its
own; `ops` is a mask of CREATE, RENAME and UNLINK.  The read-back is judged
once per distinct final image and expectation, on a machine of its own.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from pagemap import e2fsprogs
from pagemap.check.context import RunContext
from pagemap.check.scenario import Params
from pagemap.check.scenarios.ext2_fsck import _e2fsck_clean, _Image
from pagemap.check.scenarios.ext2_image import A_SIZE, BS, NOW, _mount
from pagemap.hw.memory import PGSIZE
from pagemap.kernel.fs.ext2.layout import ROOT_INO
from pagemap.machine import Machine
from pagemap.oracles import ACCOUNTING, DURABILITY, Violation
from pagemap.oracles.accounting import no_leak, quiescent

LONG = 200  # a name this long takes a 208-byte directory record
# Four long names leave 136 bytes of the root's one block: the next long name
# needs a second block, a 100-byte one still fits.
FILLERS = tuple(ch * LONG for ch in "pqrs")
NEW_NAME, RENAMED = "x" * LONG, "y" * 100
CREATE, RENAME, UNLINK = 1, 2, 4  # ext2-namespace-writeback's `ops`, a mask
DIR_PAGES = 5  # device pages that hold the root's directory blocks, first to last


@functools.cache
def _ns_image() -> bytes:
    """An image whose root directory's one block is nearly full."""
    with tempfile.TemporaryDirectory(prefix="pagemap-ext2-scenario-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        (src / "a").write_bytes(b"A" * A_SIZE)
        for name in FILLERS:
            (src / name).write_bytes(b"")
        image = Path(tmp) / "fs.img"
        e2fsprogs.mkfs(image, 256 * 1024, BS, source=src, inodes=32)
        return image.read_bytes()


def _namespace_writeback(ctx: RunContext, p: Params) -> None:
    # Namespace operations change directory blocks, inode-table records and
    # bitmaps through the device's page cache (buffer heads: get_buffer,
    # change, dirty_buffer, put_buffer) while the device's own writeback and
    # removal write those pages and evict them.  One task creates a file
    # whose name no longer fits the root's block (a second directory block is
    # allocated), renames /a into the gap left in the first, and unlinks a
    # file whose record then joins its neighbour's; the other writes back and
    # evicts every cached page of the device.  A buffer changed after its
    # page was written must leave the page dirty; a page holding a buffer in
    # use is never freed.  At the end, unmounted: e2fsck finds nothing, and
    # a fresh mount lists exactly the names the operations left, /a's bytes
    # under its new name.
    path, fs = _mount(ctx, _ns_image(), NOW)
    dev = fs.vol.dev
    fs.listdir("/")  # the root's block cached before the race

    ops = p["ops"]

    def namespace() -> None:
        if ops & CREATE:
            with fs.create("/" + NEW_NAME):
                pass
        if ops & RENAME:
            fs.rename("/a", "/" + RENAMED)
        if ops & UNLINK:
            fs.unlink("/" + FILLERS[p["unlink"]])

    # The device pages from the root's block to the one its second block gets
    # (the first free after the image's files): the directory blocks, and the
    # inode table's last block, which shares the root block's page.
    first = fs.iget(ROOT_INO).bmap.i_block[0] * BS // PGSIZE

    def device_writeback() -> None:
        for _ in range(p["rounds"]):
            dev.mapping.remove_contig(first, DIR_PAGES)

    ctx.machine.spawn(namespace, name="create-rename-unlink")
    ctx.machine.spawn(device_writeback, name="device-writeback")

    names = {".", "..", "lost+found", "a", *FILLERS}
    if ops & CREATE:
        names.add(NEW_NAME)
    if ops & RENAME:
        names = names - {"a"} | {RENAMED}
    if ops & UNLINK:
        names.discard(FILLERS[p["unlink"]])
    renamed = "/" + (RENAMED if ops & RENAME else "a")

    def unmount() -> list[Violation]:
        fs.unmount()
        return [Violation(ACCOUNTING, q) for q in fs.check_quiescent()]

    def read_back() -> list[Violation]:
        # A pure function of the image's bytes (the names and /a's new name
        # are the model's): judged once per distinct final image, as e2fsck.
        return _ns_read_back(_NsImage(path, frozenset(names), renamed))

    ctx.at_end(lambda: quiescent(ctx.machine))
    ctx.at_end(unmount)
    ctx.at_end(lambda: no_leak(ctx.machine))
    ctx.at_end(lambda: _e2fsck_clean(path))
    ctx.at_end(read_back)


def _create_create(ctx: RunContext, p: Params) -> None:
    # The root's one block has 136 bytes left after its last entry (four
    # long fillers): room for both short names (`long` 0), or for neither, so
    # that each create adds a second directory block (`long` 1).  Two tasks
    # create one file each; both must be listed, and e2fsck find nothing.
    path, fs = _mount(ctx, _ns_image(), NOW)
    fs.listdir("/")  # the root's block cached before the race
    new = ("x" * LONG, "y" * LONG) if p["long"] else ("x", "y")

    def create(name: str) -> None:
        with fs.create("/" + name):
            pass

    for name in new:
        ctx.machine.spawn(create, name, name=f"create-{name[0]}")
    names = frozenset({".", "..", "lost+found", "a", *FILLERS, *new})

    def unmount() -> list[Violation]:
        fs.unmount()
        return [Violation(ACCOUNTING, q) for q in fs.check_quiescent()]

    ctx.at_end(lambda: quiescent(ctx.machine))
    ctx.at_end(unmount)
    ctx.at_end(lambda: no_leak(ctx.machine))
    ctx.at_end(lambda: _e2fsck_clean(path))
    ctx.at_end(lambda: _ns_read_back(_NsImage(path, names, "/a")))


class _NsImage(_Image):
    """An ext2-namespace-writeback image at the end of a schedule, with what its
    root must list: equal to another with the same bytes and expectations."""

    __slots__ = ("names", "renamed")

    def __init__(self, path: str, names: frozenset[str], renamed: str) -> None:
        super().__init__(path)
        self.names = names
        self.renamed = renamed

    def __hash__(self) -> int:
        return hash((self.digest, self.names, self.renamed))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _NsImage) and (other.digest, other.names, other.renamed) == (
            self.digest,
            self.names,
            self.renamed,
        )


@functools.lru_cache(maxsize=1024)
def _ns_read_back(image: _NsImage) -> list[Violation]:
    """A fresh read-only mount lists exactly the names the operations left,
    and /a's bytes under its new name.

    The mount is made on a machine of its own, not the run's: this runs only
    on a cache miss, and a mount on the run's machine would leave frames and
    words behind in some runs and not in others, so that one schedule ended
    in two states depending on what ran before it in the process (DPOR's
    equivalence test saw DFS's first schedule as a state DPOR missed)."""
    judge = Machine(cores=1, memory="1MiB", executor="sim")
    ro = judge.mount(image.path, "r", clock=lambda: 0)
    try:
        names = image.names
        listed = set(ro.listdir("/")) | {".", ".."}
        problems = []
        if listed != names:
            problems.append(
                Violation(
                    DURABILITY,
                    f"the root lists {sorted(n[:8] for n in listed - names)} it should not "
                    f"and lacks {sorted(n[:8] for n in names - listed)}",
                )
            )
        elif ro.read_file(image.renamed) != b"A" * A_SIZE:
            problems.append(Violation(DURABILITY, f"{image.renamed} (once /a) lost its bytes"))
        return problems
    finally:
        ro.unmount()
        judge.close()
