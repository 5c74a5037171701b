"""Block devices over disk images, their pages split into buffer heads.

As in Akaros, a block device caches its blocks in its own page map, a page of
the device at a time.  Its readpage reads every block of the page from the
image and chains one BufferHead per block on the page (page.buffers); the
block code, not the page map, sets PG_BUFFER.  get_buffer loads the page that
holds a block and hands back that block's buffer head, keeping the page's
slot reference until put_buffer.  dirty_buffer marks the buffer and its page;
writepage writes the dirty buffers only.

A device's block size is chosen by its first get_buffer, or set by
set_block_size while nothing is cached, as mounting a filesystem sets it on
Linux; every page's buffer heads are that size.

A filesystem on the device (kernel/fs/) keeps its metadata in these buffers
and reads and writes file data straight to the image with read_blocks and
write_blocks, never through this cache.  When it frees a block it had
cached, forget_buffer (Linux's bforget) drops the buffer's dirty bit without
writing it, so the stale metadata never lands on a block that now holds a
file's data.  claim/release keep a second filesystem off a mounted device.

Every public call checks its arguments first (kernel/owner.py): a buffer
head of another machine is WrongMachine, one of another device of this
machine EINVAL; once the machine is closed (the image's descriptor with it)
every call but put_buffer answers EBADF; put_buffer still gives back what
was taken.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator

from pagemap.hw.memory import PGSIZE
from pagemap.kernel.errors import InvalidArgument, IOFailure, KernelBug, KernelError
from pagemap.kernel.hostio import HostFaults, HostIO, host_open_error, host_path, open_host
from pagemap.kernel.owner import as_int, check_open, check_page, check_type
from pagemap.kernel.page import PG_BUFFER, PG_DIRTY, PG_UPTODATE, Page, lock_page, unlock_page
from pagemap.kernel.pagemap import PageMap
from pagemap.kernel.radix import ALL_PAGES
from pagemap.kernel.vfs import Buffer, PageMapFactory
from pagemap.sync.atomic import AtomicWord
from pagemap.sync.core import READ, WRITE
from pagemap.sync.executor import Executor

BH_UPTODATE = 0x1  # the buffer holds the image's bytes (or newer)
BH_DIRTY = 0x2  # the buffer holds bytes the image has not seen

MIN_BLOCK_SIZE = 512
MAX_BLOCK_SIZE = PGSIZE


def valid_block_size(size: int) -> bool:
    return MIN_BLOCK_SIZE <= size <= MAX_BLOCK_SIZE and size & (size - 1) == 0


class BufferHead:
    """struct buffer_head: one block of a device, inside a cached page."""

    __slots__ = ("_data", "blk_num", "blk_size", "flags", "next", "page")

    def __init__(
        self, page: Page, blk_num: int, blk_size: int, data: memoryview, flags: AtomicWord
    ) -> None:
        self.page = page
        self.blk_num = blk_num
        self.blk_size = blk_size
        self._data = data  # the block's bytes, in the page's frame
        self.flags = flags
        self.next: BufferHead | None = None

    @property
    def data(self) -> memoryview:
        """The block's bytes; the step that takes them names the frame, as
        Page.data does (a filesystem's metadata races the device's writeback)."""
        touch = self.page._frames.touch
        if touch is not None:
            touch(self.page.ppn, WRITE)
        return self._data

    def __repr__(self) -> str:
        return f"BufferHead(block {self.blk_num} of {self.blk_size}, flags={self.flags.value:#x})"


def page_buffers(page: Page) -> Iterator[BufferHead]:
    """The buffer heads chained on a page, in block order."""
    bh: BufferHead | None = page.buffers
    while bh is not None:
        yield bh
        bh = bh.next


class BlockDevice:
    """A disk image as a block device: sectors of `sector_size` bytes."""

    def __init__(
        self,
        executor: Executor,
        make_page_map: PageMapFactory,
        name: str,
        io: HostIO,
        nr_bytes: int,
        sector_size: int,
    ) -> None:
        self.executor = executor
        self.name = name
        self.io = io
        self.nr_bytes = nr_bytes
        self.sector_size = sector_size
        self.blk_size_word = executor.atomic(0, f"{name}.blk_size")
        self.mapping = make_page_map(self, self, name)
        self.holder: object | None = None  # who has it mounted (claim/release)
        self.holder_lock = executor.spinlock(f"{name}.holder")

    def __repr__(self) -> str:
        return f"BlockDevice({self.name}, {self.nr_sectors} sectors of {self.sector_size})"

    @property
    def nr_sectors(self) -> int:
        return self.nr_bytes // self.sector_size

    @property
    def faults(self) -> HostFaults:
        return self.io.faults

    @property
    def blk_size(self) -> int:
        """The block size in use; 0 before the first get_buffer."""
        return self.blk_size_word.load()

    # -- the page map's ops --------------------------------------------------------
    def readpage(self, pm: PageMap, page: Page) -> None:
        """Read every block of the page and chain a buffer head for each; a
        page past the device's end (only the last can be) gets the blocks it
        has, and zeros after them."""
        blk_size = self._claim_block_size(self.blk_size_word.load() or self.sector_size)
        base = page.index * PGSIZE
        nr_blocks = min(PGSIZE, self.nr_bytes - base) // blk_size
        first_blk = base // blk_size
        head: BufferHead | None = None
        tail: BufferHead | None = None
        for i in range(nr_blocks):
            lo = i * blk_size
            block = self.io.pread(blk_size, base + lo)
            if len(block) != blk_size:
                raise IOFailure(
                    f"{self.name}: block {first_blk + i} ends past the image's end "
                    "(the image shrank under the device)"
                )
            self.executor.point("frame_write", page.ppn, WRITE)
            page.data[lo : lo + blk_size] = block
            flags = self.executor.atomic(BH_UPTODATE, f"{self.name}.bh[{first_blk + i}].flags")
            bh = BufferHead(page, first_blk + i, blk_size, page.data[lo : lo + blk_size], flags)
            if tail is None:
                head = bh
            else:
                tail.next = bh
            tail = bh
        page.data[nr_blocks * blk_size :] = bytes(PGSIZE - nr_blocks * blk_size)
        # Only a fully read page gets its buffers: a failed read leaves none.
        page.buffers = head
        page.flags.fetch_or(PG_BUFFER | PG_UPTODATE)

    def writepage(self, pm: PageMap, page: Page) -> None:
        """Write the page's dirty buffers, and only those.  A failure leaves
        the failed buffer, and those not yet tried, dirty."""
        for bh in page_buffers(page):
            if not bh.flags.fetch_and(~BH_DIRTY) & BH_DIRTY:
                continue
            try:
                self.executor.point("frame_read", page.ppn, READ)
                self.io.pwrite(bh.data, bh.blk_num * bh.blk_size)
            except BaseException:
                bh.flags.fetch_or(BH_DIRTY)
                raise

    # -- buffers -----------------------------------------------------------------
    def _claim_block_size(self, blk_size: int) -> int:
        if self.blk_size_word.cas(0, blk_size):
            return blk_size
        in_use = self.blk_size_word.load()
        if in_use != blk_size:
            raise InvalidArgument(
                f"{self.name}: block size {blk_size} asked for, but the device is in use "
                f"with blocks of {in_use}"
            )
        return in_use

    def _check_block(self, blk_num: int, blk_size: int) -> None:
        if not valid_block_size(blk_size) or blk_size < self.sector_size:
            raise InvalidArgument(
                f"{self.name}: block size {blk_size} is not a power of two from "
                f"{max(MIN_BLOCK_SIZE, self.sector_size)} to {MAX_BLOCK_SIZE}"
            )
        nr_blocks = self.nr_bytes // blk_size
        if not 0 <= blk_num < nr_blocks:
            raise InvalidArgument(
                f"{self.name}: block {blk_num} is outside the device "
                f"(blocks 0..{nr_blocks - 1} of {blk_size} bytes)"
            )

    @property
    def closed(self) -> bool:
        """Whether its machine was closed (and the image's descriptor with it)."""
        return self.io.closed

    def _check_open(self, op: str) -> None:
        if self.io.closed:
            check_open(True, f"{self.name}: {op}", "the device's machine")

    def _check_mine(self, bh: BufferHead, op: str) -> None:
        check_type(bh, BufferHead, f"{self.name}: {op}", "the buffer")
        check_page(self.mapping.allocator, bh.page, f"{self.name}: {op}", "the buffer")
        if bh.page.mapping is not self.mapping:
            raise InvalidArgument(f"{self.name}: {op} of {bh!r}, which is not this device's")

    def get_buffer(self, blk_num: int, blk_size: int) -> BufferHead:
        """Block `blk_num` (of `blk_size` bytes), read from the image if not
        cached; hold it until put_buffer.  However many tasks race for a
        block, the image is read once (load_page runs readpage once)."""
        self._check_open("get_buffer")
        blk_num = as_int(blk_num, f"{self.name}: get_buffer", "the block number")
        blk_size = as_int(blk_size, f"{self.name}: get_buffer", "the block size")
        self._check_block(blk_num, blk_size)
        if self.blk_size_word.load() != blk_size:
            self._claim_block_size(blk_size)
        per_page = PGSIZE // blk_size
        page = self.mapping.load_page(blk_num // per_page)
        found = next((bh for bh in page_buffers(page) if bh.blk_num == blk_num), None)
        if found is None:  # an invariant broken: our reference goes back first
            self.mapping.put_page(page)
            raise KernelBug(
                f"{self.name}: page {page.index} has no buffer head for block {blk_num}"
            )
        return found

    def dirty_buffer(self, bh: BufferHead) -> None:
        """Mark the buffer, then its page, dirty.  In that order: a writeback
        that takes the page's dirty bit then finds the buffer's."""
        self._check_mine(bh, "dirty_buffer")
        self._check_open("dirty_buffer")
        if not self.io.writable:
            raise KernelError(f"{self.name}: the image is read-only", errno=errno.EROFS)
        bh.flags.fetch_or(BH_DIRTY)
        bh.page.flags.fetch_or(PG_DIRTY)

    def put_buffer(self, bh: BufferHead) -> None:
        self._check_mine(bh, "put_buffer")
        self.mapping.put_page(bh.page)

    def sync(self) -> None:
        """Write back every dirty buffer, then make the image durable.  A
        failed page stays dirty and cached; the error is raised at the end."""
        self._check_open("sync")
        self.mapping.writeback(0, ALL_PAGES)
        self.io.fsync()

    def forget_buffer(self, blk_num: int, blk_size: int) -> None:
        """bforget: the block was freed, so its cached bytes must never be
        written.  Clear the buffer's dirty bit (the page's other buffers keep
        theirs), waiting on the page lock for a writeback already in flight
        to finish first.  A block that is not cached needs nothing."""
        self._check_block(blk_num, blk_size)
        if self.blk_size_word.load() != blk_size:
            return  # nothing is cached in blocks of this size
        page = self.mapping.find_page(blk_num // (PGSIZE // blk_size))
        if page is None:
            return
        try:
            lock_page(page)
            try:
                for bh in page_buffers(page):
                    if bh.blk_num == blk_num:
                        bh.flags.fetch_and(~BH_DIRTY)
            finally:
                unlock_page(page)
        finally:
            self.mapping.put_page(page)

    def set_block_size(self, blk_size: int) -> None:
        """Use blocks of `blk_size` from now on (Linux's set_blocksize, as a
        mount does); EBUSY while pages of another size are cached."""
        self._check_block(0, blk_size)
        if self.blk_size_word.load() == blk_size:
            return
        if self.mapping.nr_pages:
            raise KernelError(
                f"{self.name}: cannot change the block size to {blk_size} while "
                f"{self.mapping.nr_pages} page(s) of {self.blk_size} are cached",
                errno=errno.EBUSY,
            )
        self.blk_size_word.store(blk_size)

    # -- direct block I/O ----------------------------------------------------------
    def _check_run(self, blk_num: int, count: int, blk_size: int) -> None:
        self._check_block(blk_num, blk_size)
        if count < 1 or (blk_num + count) * blk_size > self.nr_bytes:
            raise IOFailure(
                f"{self.name}: {count} block(s) of {blk_size} bytes from block {blk_num} "
                f"run past the device's {self.nr_bytes} bytes"
            )

    def read_blocks(self, blk_num: int, count: int, blk_size: int) -> bytes:
        """`count` blocks from `blk_num`, read from the image itself, not the
        cache (a filesystem's file data).  One host read: a scheduling point."""
        self._check_run(blk_num, count, blk_size)
        data = self.io.pread(count * blk_size, blk_num * blk_size)
        if len(data) != count * blk_size:
            raise IOFailure(
                f"{self.name}: block {blk_num + len(data) // blk_size} ends past the "
                "image's end (the image shrank under the device)"
            )
        return data

    def write_blocks(self, blk_num: int, data: Buffer, blk_size: int) -> None:
        """Write whole blocks from `blk_num` straight to the image."""
        src = memoryview(data).cast("B")
        if len(src) % blk_size:
            raise InvalidArgument(
                f"{self.name}: a write of {len(src)} bytes is not whole {blk_size}-byte blocks"
            )
        if not self.io.writable:
            raise KernelError(f"{self.name}: the image is read-only", errno=errno.EROFS)
        self._check_run(blk_num, len(src) // blk_size, blk_size)
        self.io.pwrite(src, blk_num * blk_size)

    # -- holders -------------------------------------------------------------------
    def claim(self, holder: object) -> None:
        """Make `holder` (a mounted filesystem) the device's only user; EBUSY
        if another has it."""
        with self.holder_lock:
            if self.holder is not None and self.holder is not holder:
                raise KernelError(f"{self.name}: the device is already mounted", errno=errno.EBUSY)
            self.holder = holder

    def release(self, holder: object) -> None:
        with self.holder_lock:
            if self.holder is holder:
                self.holder = None


class BlockDevices:
    """The machine's table of block devices, one per disk image."""

    def __init__(self, executor: Executor, make_page_map: PageMapFactory) -> None:
        self.executor = executor
        self.make_page_map = make_page_map
        self.devices: dict[tuple[int, int], BlockDevice] = {}
        self.lock = executor.spinlock("blockdevs")

    def open(self, image_path: str | os.PathLike[str], sector_size: int = 512) -> BlockDevice:
        """The device over `image_path`, the same one each time it is asked for."""
        name = host_path(image_path)
        sector_size = as_int(sector_size, f"{name}: blockdev", "the sector size")
        if not valid_block_size(sector_size):
            raise InvalidArgument(
                f"{name}: sector size {sector_size} is not a power of two "
                f"from {MIN_BLOCK_SIZE} to {MAX_BLOCK_SIZE}"
            )
        fd, writable = open_host(name, want_write=False, create=False)
        try:
            key, nr_bytes = self._image_shape(name, fd, sector_size)
        except BaseException:
            os.close(fd)
            raise
        with self.lock:
            dev = self.devices.get(key)
            if dev is None:
                label = os.path.basename(name) or name
                io = HostIO(self.executor, fd, label, writable)
                dev = BlockDevice(
                    self.executor, self.make_page_map, label, io, nr_bytes, sector_size
                )
                self.devices[key] = dev
                return dev
        os.close(fd)
        if dev.sector_size != sector_size:
            raise InvalidArgument(
                f"{name}: already a device with {dev.sector_size}-byte sectors, not {sector_size}"
            )
        return dev

    @staticmethod
    def _image_shape(name: str, fd: int, sector_size: int) -> tuple[tuple[int, int], int]:
        try:
            st = os.fstat(fd)
        except OSError as exc:
            raise host_open_error(name, exc) from exc
        if not stat.S_ISREG(st.st_mode):
            raise InvalidArgument(f"{name}: a disk image must be a regular file")
        if st.st_size % sector_size:
            raise InvalidArgument(
                f"{name}: image of {st.st_size} bytes is not a whole number of "
                f"{sector_size}-byte sectors"
            )
        return (st.st_dev, st.st_ino), st.st_size

    def sync(self) -> None:
        """sync every device; the first error is raised once all were tried."""
        first_error: OSError | None = None
        for dev in list(self.devices.values()):
            if dev.closed:
                continue
            try:
                dev.sync()
            except OSError as exc:
                first_error = first_error or exc
        if first_error is not None:
            raise first_error

    def release(self) -> None:
        """Close every image's descriptor; the devices answer EBADF after."""
        for dev in self.devices.values():
            dev.io.close()

    def check_quiescent(self) -> list[str]:
        """What is wrong with the devices when no task runs; [] if all is well."""
        problems: list[str] = []
        for dev in self.devices.values():
            for _, ppn in dev.mapping.tree.items():
                page = dev.mapping.allocator.pages[ppn]
                if not page.flags.value & PG_BUFFER or page.buffers is None:
                    problems.append(f"{dev.name}: cached page {page.index} has no buffer heads")
        return problems


__all__ = [
    "BH_DIRTY",
    "BH_UPTODATE",
    "BlockDevice",
    "BlockDevices",
    "BufferHead",
    "page_buffers",
]
