"""The ext2 scenarios' image and mount (check/scenarios/ext2.py): the small
image every schedule starts from, its mount on the run's machine, a file's
bytes read back once the image is unmounted, and Ext2ShadowFile, the
ShadowFile oracles over a file of the image.

Rules: an image is made once per process by mke2fs (e2fsprogs must be
installed: image_available says whether it is) and copied to the run's
scratch folder for each schedule, so a schedule never sees another's changes.
Scenarios that end with e2fsck mount with the clock at NOW: neither zero (a
deleted inode's dtime) nor in the future.  FILES are the default image's
names, the ones the small fsck (ext2_fsck.py) walks.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

from pagemap import e2fsprogs
from pagemap.check.context import RunContext
from pagemap.check.shadow import SLOT, ShadowFile, initial_bytes
from pagemap.hw.memory import PGSIZE
from pagemap.kernel.fs.ext2 import Ext2FS
from pagemap.machine import Machine
from pagemap.oracles import ACCOUNTING, DURABILITY, Violation
from pagemap.oracles.accounting import no_leak, quiescent
from pagemap.oracles.coherence import Shadow

BS = 1024
A_SIZE, B_SIZE = 1000, 3000  # /a one block, /b three
GROW = 600  # each writer's append crosses into a new block
I_SIZE = 12 * BS  # /i fills its direct blocks: one more needs the indirect block
J_SIZE = 14 * BS  # /j has an indirect block naming two
NOW = 1_600_000_000  # every change is stamped with this time (2020: never in the future)

FILES = ("/", "/lost+found", "/a", "/b", "/m", "/i", "/j")


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


def image_available() -> bool:
    """Whether the scenarios can build their image (e2fsprogs is installed)."""
    try:
        e2fsprogs.tool("mke2fs")
    except FileNotFoundError:
        return False
    return os.access(tempfile.gettempdir(), os.W_OK)
