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
- ext2-dindirect-truncate: a file grows into its double (or triple) indirect
  block while another's double (or triple) indirect subtree is freed;
  e2fsck, and the bytes written read back.
- ext2-truncate-read: a truncate cuts a file's last page partway and drops
  the page past it while a pread and loads through a shared mapping race
  it; no byte read is stale once the truncate returned; e2fsck.

The scenarios that end with e2fsck (`e2fsck -fn`, exit 0) stamp changes with
a fixed time that is neither zero (a deleted inode's dtime) nor in the future.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from pagemap import e2fsprogs
from pagemap.check.context import RunContext
from pagemap.check.scenario import Params, Scenario
from pagemap.check.shadow import SLOT, ShadowFile, initial_bytes
from pagemap.hw.memory import PGSIZE
from pagemap.kernel.errors import BusError
from pagemap.kernel.fs.ext2 import Ext2FS
from pagemap.kernel.fs.ext2.balloc import test_bit
from pagemap.kernel.fs.ext2.fs import Ext2File
from pagemap.kernel.fs.ext2.inode import Ext2Inode
from pagemap.kernel.fs.ext2.layout import RESIZE_INO, ROOT_INO
from pagemap.kernel.mman import MAP_SHARED, PROT_READ, PROT_WRITE
from pagemap.machine import Machine
from pagemap.oracles import ACCOUNTING, COHERENCE, DURABILITY, MEMORY_SAFETY, Violation
from pagemap.oracles.accounting import no_leak, quiescent
from pagemap.oracles.coherence import Shadow

BS = 1024
A_SIZE, B_SIZE = 1000, 3000  # /a one block, /b three
GROW = 600  # each writer's append crosses into a new block
I_SIZE = 12 * BS  # /i fills its direct blocks: one more needs the indirect block
J_SIZE = 14 * BS  # /j has an indirect block naming two


@functools.cache
def _image() -> bytes:
    """The image every schedule starts from (made once per process)."""
    with tempfile.TemporaryDirectory(prefix="pagemap-ext2-scenario-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        (src / "a").write_bytes(b"A" * A_SIZE)
        (src / "b").write_bytes(b"B" * B_SIZE)
        (src / "i").write_bytes(b"I" * I_SIZE)
        (src / "j").write_bytes(b"J" * J_SIZE)
        with open(src / "m", "wb") as f:
            f.write(initial_bytes(1))
            f.truncate(2 * PGSIZE)  # page 1 is a hole
        image = Path(tmp) / "fs.img"
        e2fsprogs.mkfs(image, 256 * 1024, BS, source=src, inodes=32)
        return image.read_bytes()


def _mount(ctx: RunContext, image: bytes | None = None, now: int = 0) -> tuple[str, Ext2FS]:
    """`image` (the default one if None) written to the run's scratch folder
    and mounted read-write, its clock at `now` (not zero where an inode is
    deleted: e2fsck takes a dtime of 0 for a live inode's)."""
    path = os.path.join(ctx.scratch(), "ext2.img")
    with open(path, "wb") as img:
        img.write(_image() if image is None else image)
    fs = ctx.machine.mount(path, "rw", clock=lambda: now)
    ctx.cleanup(fs.vol.dev.io.close)
    return path, fs


def _read_back(machine: Machine, path: str, name: str) -> bytes:
    """A file's bytes as a fresh read-only mount reads them, once the
    schedule is over and the image unmounted."""
    fs = machine.mount(path, "r", clock=lambda: 0)
    try:
        return fs.read_file(name)
    finally:
        fs.unmount()


# -- ext2-store-remove -----------------------------------------------------------------


class Ext2ShadowFile(ShadowFile):
    """ShadowFile's oracles over a file of an ext2 image."""

    def __init__(self, ctx: RunContext, fs: Ext2FS, image: str, name: str, shadow: bytes) -> None:
        self.ctx = ctx
        self.fs = fs
        self.image = image
        self.name = name
        self.host_path = None
        self.file = fs.open(name, "r+")
        self.pm = self.file.mapping
        self.shadow = Shadow(shadow)
        self.written = []
        self.stored_by = {}
        self.private = {}
        self.copied = set()
        self.regions = []
        self._store = {}
        self._expect = {}
        self._syncing = {}
        ctx.machine.on_access = self._on_access

    def end_checks(self) -> None:
        ctx = self.ctx
        ctx.at_end(lambda: quiescent(ctx.machine))
        ctx.at_end(self._exit_all)
        # Unmount writes every file back, then empties the device's cache last
        # (a file's writeback dirties the device's metadata buffers).
        ctx.at_end(self._unmount)
        ctx.at_end(lambda: no_leak(ctx.machine))
        ctx.at_end(self._durable)

    def _unmount(self) -> list[Violation]:
        self.file.close()
        self.fs.unmount()
        return [Violation(ACCOUNTING, p) for p in self.fs.check_quiescent()]

    def _durable(self) -> list[Violation]:
        on_disk = _read_back(self.ctx.machine, self.image, self.name)
        want = bytes(self.shadow.data)
        if on_disk == want:
            return []
        if len(on_disk) != len(want):
            return [Violation(DURABILITY, f"{self.name} is {len(on_disk)} bytes, not {len(want)}")]
        off = next(
            i for i in range(0, len(on_disk), SLOT) if on_disk[i : i + SLOT] != want[i : i + SLOT]
        )
        return [
            Violation(
                DURABILITY,
                f"with every page written back and the image unmounted, {self.name} holds "
                f"{on_disk[off : off + SLOT].hex()} at offset {off}, but "
                f"{want[off : off + SLOT].hex()} was written there",
            )
        ]


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


FILES = ("/", "/lost+found", "/a", "/b", "/m", "/i", "/j")


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


# -- ext2-namespace-writeback --------------------------------------------------------------

LONG = 200  # a name this long takes a 208-byte directory record
# Four long names leave 136 bytes of the root's one block: the next long name
# needs a second block, a 100-byte one still fits.
FILLERS = tuple(ch * LONG for ch in "pqrs")
NEW_NAME, RENAMED = "x" * LONG, "y" * 100
NOW = 1_600_000_000  # every change is stamped with this time (2020: never in the future)
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


# -- ext2-dindirect-truncate --------------------------------------------------------------

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


def image_available() -> bool:
    """Whether the scenarios can build their image (e2fsprogs is installed)."""
    try:
        e2fsprogs.tool("mke2fs")
    except FileNotFoundError:
        return False
    return os.access(tempfile.gettempdir(), os.W_OK)
