"""Inodes and open files: read, write, truncate and fsync through the page map.

As Akaros's generic file read and write do, both work a page at a time: load
the page through the page map, copy, put the page back.  A write marks the
page PG_DIRTY; nothing reaches the backing store until writeback (fsync, the
page map's writeback or removal, the flusher) sends it there.

Locks, outermost first:

    Inode.lock     sleeping, like Linux's i_rwsem: one writer or truncate at a time
    page lock      held by writeback around writepage
    the filesystem's own locks (a host file's host_lock), innermost

Readers take none of them: a read loads the size once and copies what the
pages hold.

One invariant makes growing a file simple: a cached page holds zeros past the
file's size.  readpage fills only up to the size; truncate zeroes the new last
page past the new size; and growth zeroes whatever a store through a shared
mapping left past the old end of the last page.

Where each part lives: read's page copies, and the page walk under write,
in kernel/pagecopy.py (PageCopy, Inode's base); fallocate's work in
kernel/fallocate.py; File, the open file, here.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from pagemap.hw.memory import PGMASK, PGSHIFT, PGSIZE
from pagemap.kernel.errors import (
    AlreadyClosed,
    FileTooLarge,
    InvalidArgument,
    IOFailure,
    KernelError,
)
from pagemap.kernel.fallocate import check_fallocate, fallocate_locked
from pagemap.kernel.owner import as_buffer, as_int
from pagemap.kernel.page import PG_DIRTY, Page
from pagemap.kernel.pagecopy import READ_RUN as READ_RUN
from pagemap.kernel.pagecopy import PageCopy
from pagemap.kernel.pagemap import PageMap, PageMapOps
from pagemap.kernel.radix import ALL_PAGES
from pagemap.sync.core import READ, WRITE
from pagemap.sync.executor import Executor

# As large as a signed 64-bit file offset allows, like Linux's off_t.  A
# filesystem may allow less (Inode.largest_size): a host file, what its host does.
MAX_FILE_SIZE = (1 << 63) - 1
# What every filesystem allows (Linux's MAX_NON_LFS): a write or truncate that
# ends below it need not ask the filesystem for its own limit.
SMALL_FILE_SIZE = (1 << 31) - 1
# The most one read or write moves, as Linux caps a count (INT_MAX rounded
# down to a page); more is a short count.
MAX_RW_COUNT = 0x7FFF_F000

Buffer = bytes | bytearray | memoryview
PageMapFactory = Callable[[PageMapOps, object, str], PageMap]


def pages_spanned(size: int) -> int:
    """How many pages hold `size` bytes."""
    return (size + PGSIZE - 1) >> PGSHIFT


def check_range(what: str, offset: int, length: int) -> tuple[int, int]:
    """(offset, length) as ints; TypeError for another type, EINVAL if negative."""
    if type(offset) is not int or type(length) is not int:
        offset, length = as_int(offset, what, "the offset"), as_int(length, what, "the length")
    if offset < 0 or length < 0:
        raise InvalidArgument(f"{what}: offset {offset} and length {length} may not be negative")
    return offset, length


class Inode(PageCopy):
    """struct inode, as much of it as the page cache needs.

    A filesystem subclasses it and fills in how its pages are read and
    written (readpage, writepage: the inode is its page map's ops) and how
    its backing store changes size and becomes durable.
    """

    def __init__(
        self, executor: Executor, make_page_map: PageMapFactory, name: str, size: int
    ) -> None:
        self.executor = executor
        self.name = name
        self.size_word = executor.atomic(size, f"{name}.i_size")
        self.lock = executor.semaphore(1, f"{name}.i_rwsem")
        self.open_count = executor.atomic(0, f"{name}.open_count")
        self.mapping = make_page_map(self, self, name)
        self.mapping.invalidate_lock.enabled = True  # a file's pages: see kernel/invalidate.py
        self._view = self.mapping.allocator.memory.view
        self._flags = self.mapping.flags
        self._points = executor.has_points
        # The largest size a write or truncate may give the file (EFBIG past it),
        # as far as is known without asking the filesystem (largest_size).
        self.max_size = MAX_FILE_SIZE
        # Set when the backing store is let go (its machine was closed); every
        # open file of the inode answers EBADF after.  A plain field: File
        # checks it on every call.
        self.released = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}, size={self.size_word.value})"

    @property
    def size(self) -> int:
        return self.size_word.load()

    # -- what a filesystem provides ----------------------------------------------
    def readpage(self, pm: PageMap, page: Page) -> None:
        raise NotImplementedError

    def writepage(self, pm: PageMap, page: Page) -> None:
        raise NotImplementedError

    def set_size(self, size: int) -> None:
        """Store the new size and make the backing store that long, as one step
        to writepage; called with `lock` held."""
        raise NotImplementedError

    def sync_backing(self) -> None:
        """Make what writepage wrote durable."""
        raise NotImplementedError

    def allocate_backing(self, mode: int, offset: int, length: int) -> None:
        """fallocate's allocation (mode 0 or KEEP_SIZE): give [offset,
        offset + length) blocks; i_rwsem held.  The caller publishes a new size."""
        raise KernelError(f"{self.name}: fallocate is not supported here", errno=errno.EOPNOTSUPP)

    def punch_backing(self, offset: int, length: int) -> None:
        """fallocate's hole punch: free the blocks of [offset, offset +
        length), which then read as zeros; i_rwsem and the invalidate lock
        held, the range's pages already gone from the cache."""
        raise KernelError(
            f"{self.name}: punching holes is not supported here", errno=errno.EOPNOTSUPP
        )

    def largest_size(self) -> int:
        """The largest size a write or truncate may give the file; a filesystem
        whose limit is costly to find finds it here, once."""
        return self.max_size

    def _size_limit(self, end: int) -> int:
        """The size limit that counts for a write or truncate ending at `end`."""
        return self.max_size if end <= SMALL_FILE_SIZE else self.largest_size()

    # -- read ----------------------------------------------------------------------
    def read(self, nbytes: int, offset: int) -> bytes:
        """Up to `nbytes` from `offset`, stopping at the end of the file.

        Running out of frames or a failed readpage after some bytes were
        copied gives those bytes (a short read, as POSIX has it); before any,
        it raises.  At most MAX_RW_COUNT bytes are read, as on Linux; the
        result is made of the pages as they are copied, so a huge count on a
        huge file costs nothing up front.
        """
        if type(offset) is not int or type(nbytes) is not int or offset < 0 or nbytes < 0:
            offset, nbytes = check_range(f"{self.name}: read", offset, nbytes)
        end = offset + (nbytes if nbytes <= MAX_RW_COUNT else MAX_RW_COUNT)
        size = self.size_word.load()
        if end > size:
            end = size
        if end <= offset:
            return b""
        off = offset & PGMASK
        if off + (end - offset) <= PGSIZE:
            return self._read_in_page(offset >> PGSHIFT, off, end - offset)
        parts = self._read_pages(offset, end)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    # -- write -------------------------------------------------------------------
    def write(self, data: Buffer, offset: int) -> int:
        """Copy `data` into the file at `offset`; the number of bytes written.

        A write past the end grows the file (the gap reads as zeros).  Running
        out of frames or a failed readpage after some pages were written gives
        their count (a short write); before any, it raises, nothing changed.
        As on Linux, a write is cut short at MAX_RW_COUNT bytes and at the
        largest file size (largest_size), and one that starts there is EFBIG.
        """
        src = as_buffer(data, f"{self.name}: write")
        offset, _ = check_range(f"{self.name}: write", offset, len(src))
        if not src:
            return 0
        limit = self._size_limit(offset + len(src))
        if offset >= limit:
            raise FileTooLarge(
                f"{self.name}: a write at {offset} starts at or past the largest size this "
                f"file may have, {limit} bytes"
            )
        src = src[: min(MAX_RW_COUNT, limit - offset)]
        self.lock.down()
        try:
            return self._write_locked(src, offset)
        finally:
            self.lock.up()

    def _write_locked(self, src: memoryview, offset: int) -> int:
        old_size = self.size_word.load()
        if offset > old_size:
            self._zero_cached(old_size, offset)

        def copy_in(page: Page, off: int, chunk: int, at: int) -> None:
            page.data[off : off + chunk] = src[at : at + chunk]
            # The size before PG_DIRTY.  A writeback that clears our dirty bit
            # then reads a size covering these bytes; the other way round it
            # could clear the bit, write only up to the old size, and leave the
            # page clean with our bytes never written
            # (test_write_racing_writeback_loses_nothing).
            if offset + at + chunk > self.size_word.load():
                self.size_word.store(offset + at + chunk)
            page.flags.fetch_or(PG_DIRTY)

        return self._each_page(offset, offset + len(src), "frame_write", copy_in)

    # -- truncate ----------------------------------------------------------------
    def truncate(self, size: int) -> None:
        """Make the file `size` bytes long, dropping or zero-extending its end.

        Shrinking drops every cached page wholly past the new end and zeroes
        the new last page past it; neither a read nor a writeback can bring the
        old bytes back (test_truncate_racing_writeback_never_resurrects).
        """
        size = as_int(size, f"{self.name}: truncate", "the size")
        if size < 0:
            raise InvalidArgument(f"{self.name}: truncate to {size}: a size may not be negative")
        limit = self._size_limit(size)
        if size > limit:
            raise FileTooLarge(
                f"{self.name}: truncate to {size} passes the largest size this file may have, "
                f"{limit} bytes"
            )
        self.lock.down()
        try:
            old_size = self.size_word.load()
            if size < old_size:
                self._shrink(size)
            else:
                self.set_size(size)
                if size > old_size:
                    self._zero_cached(old_size, size)
        finally:
            self.lock.up()

    def _shrink(self, size: int) -> None:
        """truncate's shrinking half, i_rwsem held: under the mapping's
        invalidate lock (kernel/invalidate.py), so no read or fault adds a
        page past the new end between the cut and the drop."""
        invalidate = self.mapping.invalidate_lock
        invalidate.down_write()
        try:
            # The size first: from here readpage fills and writepage writes
            # nothing past it, so no page we are about to drop goes back out.
            self.set_size(size)
            self.mapping.truncate_pages(pages_spanned(size))
            self.mapping.drop_private_copies(pages_spanned(size))
            # After the drop: a reader that loaded the last page before the
            # size changed may have filled it with old bytes; find_page waits
            # for that fill to finish before we zero.
            self._zero_cached(size, pages_spanned(size) << PGSHIFT)
        finally:
            invalidate.up_write()

    # -- fallocate ---------------------------------------------------------------
    def fallocate(self, mode: int, offset: int, length: int, writable: bool = True) -> None:
        """fallocate(2) (kernel/fallocate.py): allocate, or punch a hole."""
        what = f"{self.name}: fallocate"
        mode, offset, length = check_fallocate(self, what, mode, offset, length, writable)
        self.lock.down()
        try:
            fallocate_locked(self, mode, offset, length)
        finally:
            self.lock.up()

    def _zero_cached(self, lo: int, hi: int) -> None:
        """Zero bytes [lo, hi) of the page holding `lo`, if that page is cached
        and `lo` is not its first byte (whole pages past the end are never
        written: a store there is a bus error, and readpage zero-fills)."""
        index, off = divmod(lo, PGSIZE)
        if not off:
            return
        page = self.mapping.find_page(index)
        if page is None:
            return
        try:
            stop = min(hi - (index << PGSHIFT), PGSIZE)
            self.executor.point("frame_write", page.ppn, WRITE)
            page.data[off:stop] = bytes(stop - off)
        finally:
            self.mapping.put_page(page)

    # -- durability --------------------------------------------------------------
    def fsync(self) -> None:
        """Write back every dirty page, then make the backing store durable.

        Stores through shared mappings count: their PTEs' dirty bits are
        moved to the pages first.  A failed writepage leaves its page dirty
        and cached; the error is raised once every other page has been tried.
        """
        self.mapping.collect_mapped_dirty(0, ALL_PAGES)
        self.mapping.writeback(0, ALL_PAGES)
        self.sync_backing()


class File:
    """An open file: a mode, the inode it reads and writes, and where it
    stands in its mapping's record of writeback errors (kernel/errseq.py):
    each fsync or msync reports, once, the errors recorded since this file
    last reported one, or since it was opened."""

    def __init__(self, inode: Inode, path: str, mode: str, readable: bool, writable: bool) -> None:
        self.inode = inode
        self.path = path
        self.mode = mode
        self.readable = readable
        self.writable = writable
        self._closed = inode.executor.atomic(0, f"{inode.name}.file.closed")
        inode.open_count.fetch_add(1)
        self._wb_since = inode.mapping.wb_err.sample(self)  # file->f_wb_err
        # f_wb_err is read without f_lock (the look first) and written under
        # it: the steps that do either name it, so that DPOR orders a look of
        # one sync against the advance of another (eio-fsync: an fsync and an
        # msync of one file; found by the hidden-state check, check/hidden.py).
        self._wb_key = (f"{inode.name}.f_wb_err", 0)
        # file->f_lock: two syncs of one file description check and advance
        # its mark one at a time, or both would report one error (eio-fsync).
        self._f_lock = inode.executor.spinlock(f"{inode.name}.f_lock")

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"File({self.path!r}, mode={self.mode!r}, {state})"

    def __enter__(self) -> File:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return bool(self._closed.load())

    @property
    def size(self) -> int:
        return self.inode.size

    @property
    def mapping(self) -> PageMap:
        return self.inode.mapping

    def _check_open(self, op: str) -> None:
        if self._closed.load():
            raise AlreadyClosed(f"{self.path}: {op} on a closed file")
        if self.inode.released:
            raise AlreadyClosed(f"{self.path}: {op} on a file whose machine was closed")

    def _check_writable(self, op: str) -> None:
        self._check_open(op)
        if not self.writable:
            raise KernelError(
                f"{self.path}: {op} on a file opened {self.mode!r}, which is read-only",
                errno=errno.EBADF,
            )

    def pread(self, nbytes: int, offset: int) -> bytes:
        self._check_open("pread")
        if not self.readable:
            raise KernelError(
                f"{self.path}: pread on a file opened {self.mode!r}, which is write-only",
                errno=errno.EBADF,
            )
        return self.inode.read(nbytes, offset)

    def pwrite(self, data: Buffer, offset: int) -> int:
        self._check_writable("pwrite")
        return self.inode.write(data, offset)

    def truncate(self, size: int) -> None:
        self._check_writable("truncate")
        self.inode.truncate(size)

    def fallocate(self, mode: int, offset: int, length: int) -> None:
        """fallocate(2): FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE frees
        the blocks of a range (it reads as zeros after), 0 or KEEP_SIZE
        allocates them (kernel/fallocate.py); Linux's errors."""
        self._check_open("fallocate")
        self.inode.fallocate(mode, offset, length, self.writable)

    def fsync(self) -> None:
        """Write back and sync the inode, then report a writeback error
        recorded since this file last reported one (whoever's writeback met
        it), as Linux's file_write_and_wait_range: an error of this fsync's
        own writeback is raised as it is, and counts as reported."""
        self._check_open("fsync")
        try:
            self.inode.fsync()
        except OSError:
            self.advance_wb_err()
            raise
        self._report_wb_err("fsync")

    def sync_backing(self) -> None:
        """Make what writeback wrote of this file durable, without writing
        anything back: msync's MS_SYNC, after it wrote its range; then report
        a writeback error as fsync does.  Works on a closed file, as msync
        does through a mapping that outlived its fd."""
        self.inode.sync_backing()
        self._report_wb_err("msync")

    def advance_wb_err(self) -> None:
        """Take the mapping's writeback errors as reported to this file: a
        sync that raised its own writeback error (msync, fsync) told of it."""
        self._check_and_advance_wb_err()

    def _check_and_advance_wb_err(self) -> int:
        """file_check_and_advance_wb_err: the errno to report (0 for none).
        As Linux, a look without the lock first: most syncs find nothing new."""
        touch = self.inode.executor.touch
        touch(self._wb_key, READ)
        if self.inode.mapping.wb_err.unchanged(self, self._wb_since):
            return 0
        with self._f_lock:
            code, since = self.inode.mapping.wb_err.check_and_advance(self, self._wb_since)
            touch(self._wb_key, WRITE)  # in the step that writes it
            self._wb_since = since
        return code

    def _report_wb_err(self, op: str) -> None:
        code = self._check_and_advance_wb_err()
        if code:
            raise IOFailure(
                f"{self.path}: {op}: writing back this file failed "
                f"({errno.errorcode.get(code, code)}) since this file last synced or was opened; "
                "what failed to be written may be lost",
                errno=code,
            )

    def close(self) -> None:
        """Close this file; closing twice is harmless.  As on Linux, the inode
        and its cached pages stay: close writes nothing back."""
        if not self._closed.swap(1):
            self.inode.open_count.fetch_add(-1)


__all__ = ["MAX_FILE_SIZE", "MAX_RW_COUNT", "File", "Inode", "pages_spanned"]
