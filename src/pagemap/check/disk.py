"""An in-memory backing store for page-map scenarios, with a shadow copy.

`MemDisk` is a page map's `ops`: readpage copies a block in, writepage copies
a page out, each after a scheduling point (the I/O), so other tasks can run
while a page is being read or written, as they could on a real disk.  It
knows what the protocol promises and says so through the run's oracles:

- readpage of a page already up to date would clobber newer writes
  (coherence): the loader skipped its re-check;
- readpage or writepage of a page in a free frame, or one that is no longer
  this map's page, touches memory nobody owns (memory safety).

The shadow is what every block would hold if every write so far had reached
the disk, in order.  `write` updates page and shadow with no scheduling
point between them, so under the sequentially consistent SimExecutor the
shadow is always "the latest store".
"""

from __future__ import annotations

from pagemap.check.oracle import COHERENCE, DURABILITY, MEMORY_SAFETY, RunContext, Violation
from pagemap.hw.memory import PGSIZE
from pagemap.kernel.errors import IOFailure
from pagemap.kernel.page import PG_DIRTY, PG_UPTODATE, Page
from pagemap.kernel.pagemap import PageMap
from pagemap.sync.core import READ, WRITE


def block_bytes(index: int, version: int, writer: int = 0) -> bytes:
    """A page's worth of bytes naming (index, version, writer): any two differ,
    and none is all zeros, so a frame that was never filled shows."""
    stamp = (index & 0xFFFFFF) | (version & 0xFFFFFF) << 24 | (writer & 0x7FFF) << 48 | 1 << 63
    return stamp.to_bytes(8, "little") * (PGSIZE // 8)


class MemDisk:
    """Blocks 0..nr_blocks-1 in memory, and the page-map ops over them."""

    def __init__(self, ctx: RunContext, nr_blocks: int, name: str = "disk") -> None:
        self.ctx = ctx
        self.name = name
        self.blocks = [block_bytes(i, 0) for i in range(nr_blocks)]
        self.shadow = list(self.blocks)
        self.versions = [0] * nr_blocks
        self.reads = [0] * nr_blocks
        self.writes = [0] * nr_blocks
        # index -> how many more reads of it fail with EIO.
        self.read_faults: dict[int, int] = {}
        self.write_faults: dict[int, int] = {}

    # -- page_map_operations -----------------------------------------------------
    def readpage(self, pm: PageMap, page: Page) -> None:
        sched = self.ctx.sched
        sched.point("readpage", ("disk", self.name, page.index), READ)
        sched.touch(page.ppn, WRITE)  # the frame it fills
        self._check_owner(pm, page, "readpage")
        if page.flags.value & PG_UPTODATE:
            self.ctx.fail(
                COHERENCE,
                f"readpage of page {page.index} of {pm.name}, which is already up to date: "
                "a second read would clobber writes made since the first",
            )
        if self._inject(self.read_faults, page.index):
            raise IOFailure(f"{self.name}: read error on block {page.index}")
        self.reads[page.index] += 1
        page.data[:] = self.blocks[page.index]
        page.flags.fetch_or(PG_UPTODATE)

    def writepage(self, pm: PageMap, page: Page) -> None:
        sched = self.ctx.sched
        sched.point("writepage", ("disk", self.name, page.index), WRITE)
        sched.touch(page.ppn, READ)  # the frame it writes out
        self._check_owner(pm, page, "writepage")
        if self._inject(self.write_faults, page.index):
            raise IOFailure(f"{self.name}: write error on block {page.index}")
        self.writes[page.index] += 1
        self.blocks[page.index] = bytes(page.data)

    # -- what tasks do with pages ---------------------------------------------------
    def write(self, pm: PageMap, page: Page, writer: int) -> None:
        """Store new bytes into a page the task holds, as a write() would, and
        mark it dirty."""
        i = page.index
        self.versions[i] += 1
        data = block_bytes(i, self.versions[i], writer)
        self.ctx.sched.touch(page.ppn, WRITE)
        page.data[:] = data
        self.shadow[i] = data
        page.flags.fetch_or(PG_DIRTY)

    def check_read(self, pm: PageMap, page: Page, who: str) -> None:
        """Coherence: a loaded page holds the latest bytes written to it."""
        i = page.index
        self.ctx.sched.touch(page.ppn, READ)  # the verdict depends on the frame's bytes
        if page.data != self.shadow[i]:
            got = int.from_bytes(page.data[:8], "little")
            want = int.from_bytes(self.shadow[i][:8], "little")
            self.ctx.fail(
                COHERENCE,
                f"{who} loaded page {i} of {pm.name} and found version {(got >> 24) & 0xFFFFFF} "
                f"(stamp {got:#x}), but the latest write was version {self.versions[i]} "
                f"(stamp {want:#x})",
            )

    def check_durable(self) -> list[Violation]:
        """Durability, once every page is written back: the disk is the shadow."""
        return [
            Violation(
                DURABILITY,
                f"block {i} of {self.name} holds version "
                f"{(int.from_bytes(self.blocks[i][:8], 'little') >> 24) & 0xFFFFFF}, "
                f"but version {self.versions[i]} was written to it",
            )
            for i in range(len(self.blocks))
            if self.blocks[i] != self.shadow[i]
        ]

    # -- helpers ------------------------------------------------------------------------
    def _check_owner(self, pm: PageMap, page: Page, what: str) -> None:
        if self.ctx.machine.allocator.is_free(page.ppn):
            self.ctx.fail(MEMORY_SAFETY, f"{what} of page {page.index} in free frame {page.ppn}")
        if page.mapping is not pm:
            self.ctx.fail(
                MEMORY_SAFETY, f"{what} of frame {page.ppn}, which no longer belongs to {pm.name}"
            )

    @staticmethod
    def _inject(faults: dict[int, int], index: int) -> bool:
        left = faults.get(index, 0)
        if left:
            faults[index] = left - 1
            return True
        return False
