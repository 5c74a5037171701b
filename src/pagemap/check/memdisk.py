"""The in-memory backing stores of the checker and the tests: one disk, one file.

`MemDisk` is a bare page map's `ops`: block i is page i, read and written
whole.  `MemInode` is a VFS inode whose bytes live in a bytearray: a file
with a size, truncate and fsync, for scenarios and tests that map and write
files without touching the host.  Both make every transfer a scheduling point
(the I/O), so other tasks can run while a page is being read or written, as
they could on a real disk; both name what they touch (the block or file page,
and the frame) in the step's footprint; both count their calls and fail the
next N on request (`fail_reads`, `fail_writes`, or per block with
`read_faults`/`write_faults`), as a failing disk would.

A `watch` (the checker's oracles) may be told of every transfer as it
happens, to check what the protocol promises: a readpage of a page already
up to date would clobber newer writes; a transfer of a page in a free frame,
or of a page no longer this map's, touches memory nobody owns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from pagemap.hw.memory import PGSIZE
from pagemap.kernel.errors import IOFailure
from pagemap.kernel.page import PG_UPTODATE, Page
from pagemap.kernel.pagemap import PageMap
from pagemap.kernel.vfs import Inode, PageMapFactory
from pagemap.sync.core import READ, WRITE
from pagemap.sync.executor import Executor


def page_bytes(index: int, version: int = 0) -> bytes:
    """A page's worth of bytes naming (index, version); never all zeros, so a
    frame that was never filled shows."""
    return (index.to_bytes(6, "little") + (version | 0x8000).to_bytes(2, "little")) * (PGSIZE // 8)


class DiskWatch(Protocol):
    """What the oracles want to hear of transfers."""

    def reading(self, pm: PageMap, page: Page) -> None: ...

    def writing(self, pm: PageMap, page: Page) -> None: ...


class Faults:
    """Make the next N transfers fail with EIO, all blocks or one."""

    def __init__(self) -> None:
        self.fail_reads = 0
        self.fail_writes = 0
        self.read_faults: dict[int, int] = {}  # block -> how many more reads of it fail
        self.write_faults: dict[int, int] = {}

    def take(self, write: bool, index: int) -> bool:
        per_block = self.write_faults if write else self.read_faults
        left = per_block.get(index, 0)
        if left:
            per_block[index] = left - 1
            return True
        if write and self.fail_writes:
            self.fail_writes -= 1
            return True
        if not write and self.fail_reads:
            self.fail_reads -= 1
            return True
        return False

    def clear(self) -> None:
        self.fail_reads = self.fail_writes = 0
        self.read_faults.clear()
        self.write_faults.clear()


class MemDisk(Faults):
    """Blocks of PGSIZE bytes in memory, and the page-map ops over them.

    `store` maps block -> its bytes; a block never written reads as
    `fill(block)` (by default page_bytes(block)).  `reads` counts reads per
    block; `writes` lists the blocks written, in order.
    """

    def __init__(self, name: str = "disk", fill: Callable[[int], bytes] = page_bytes) -> None:
        super().__init__()
        self.name = name
        self.fill = fill
        self.store: dict[int, bytes] = {}
        self.reads: dict[int, int] = {}
        self.writes: list[int] = []
        self.watch: DiskWatch | None = None

    def block(self, index: int) -> bytes:
        got = self.store.get(index)
        return got if got is not None else self.fill(index)

    def readpage(self, pm: PageMap, page: Page) -> None:
        i = page.index
        pm.executor.point("readpage", ("disk", self.name, i), READ)
        pm.executor.touch(page.ppn, WRITE)  # the frame it fills
        if self.watch is not None:
            self.watch.reading(pm, page)
        self.reads[i] = self.reads.get(i, 0) + 1
        if self.take(False, i):
            raise IOFailure(f"{self.name}: read error on block {i} (injected)")
        page.data[:] = self.block(i)
        page.flags.fetch_or(PG_UPTODATE)

    def writepage(self, pm: PageMap, page: Page) -> None:
        i = page.index
        pm.executor.point("writepage", ("disk", self.name, i), WRITE)
        pm.executor.touch(page.ppn, READ)  # the frame it writes out
        if self.watch is not None:
            self.watch.writing(pm, page)
        if self.take(True, i):
            raise IOFailure(f"{self.name}: write error on block {i} (injected)")
        self.store[i] = bytes(page.data)
        self.writes.append(i)


class MemInode(Faults, Inode):
    """A file whose bytes live in a bytearray (`data`), cached through its page map."""

    def __init__(
        self, executor: Executor, make_page_map: PageMapFactory, name: str, data: bytes
    ) -> None:
        Faults.__init__(self)
        self.data = bytearray(data)
        self.reads: dict[int, int] = {}
        self.writes: list[int] = []
        self.watch: DiskWatch | None = None
        Inode.__init__(self, executor, make_page_map, name, len(data))

    def readpage(self, pm: PageMap, page: Page) -> None:
        i = page.index
        self.executor.point("readpage", ("file", self.name, i), READ)
        self.executor.touch(page.ppn, WRITE)
        self.executor.touch(("file", self.name, "size"), READ)  # it reads up to the size
        if self.watch is not None:
            self.watch.reading(pm, page)
        self.reads[i] = self.reads.get(i, 0) + 1
        if self.take(False, i):
            raise IOFailure(f"{self.name}: read error on page {i} (injected)")
        start = i * PGSIZE
        got = bytes(self.data[start : min(start + PGSIZE, self.size_word.value)])
        page.data[: len(got)] = got
        page.data[len(got) :] = bytes(PGSIZE - len(got))
        page.flags.fetch_or(PG_UPTODATE)

    def writepage(self, pm: PageMap, page: Page) -> None:
        i = page.index
        self.executor.point("writepage", ("file", self.name, i), WRITE)
        self.executor.touch(page.ppn, READ)
        self.executor.touch(("file", self.name, "size"), READ)  # it writes below the size
        if self.watch is not None:
            self.watch.writing(pm, page)
        if self.take(True, i):
            raise IOFailure(f"{self.name}: write error on page {i} (injected)")
        start = i * PGSIZE
        n = max(0, min(PGSIZE, self.size_word.value - start))
        self.data[start : start + n] = page.data[:n]
        self.writes.append(i)

    def set_size(self, size: int) -> None:
        # The size and the bytes change in one step: the file page footprint of
        # every page past the smaller size is written (a truncate races writepage).
        old = self.size_word.value
        self.executor.point("set_size", ("file", self.name, "size"), WRITE)
        self.size_word.store(size)
        if size < old:
            del self.data[size:]
        else:
            self.data.extend(bytes(size - len(self.data)))

    def sync_backing(self) -> None:
        self.executor.point("fsync", ("file", self.name, "size"), READ)


__all__ = ["DiskWatch", "Faults", "MemDisk", "MemInode", "page_bytes"]
