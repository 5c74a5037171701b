"""fallocate(2): allocate a file's blocks, or punch a hole in it.

Modes, as Linux's <linux/falloc.h> numbers them; the ones a filesystem here
implements are 0 (allocate, growing the file), FALLOC_FL_KEEP_SIZE (allocate,
keeping the size) and FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE (free the
blocks of a range, which then reads as zeros; the size stays).  The others
are refused as a filesystem without them refuses them: EOPNOTSUPP.

Arguments are checked in vfs_fallocate's order: EINVAL for a negative
offset or a length that is not positive; EOPNOTSUPP for unknown bits, for
PUNCH_HOLE with ZERO_RANGE, or PUNCH_HOLE without KEEP_SIZE; EINVAL for
COLLAPSE_RANGE, INSERT_RANGE or UNSHARE_RANGE mixed with other bits; EBADF
on a file not open for writing; EFBIG past the largest file size.

Punching a hole, with the inode's i_rwsem held (Inode.fallocate):

1. take the mapping's invalidate lock exclusive (kernel/invalidate.py): no
   read or fault adds a page of the range from here on;
2. zero the partial pages at either end, if cached, under their page locks
   (a writeback in flight finishes first), and mark them dirty, so the
   zeros reach the backing store whatever it does with part of a block;
3. drop the whole pages of the range from the cache, mapped, dirty or held
   (Removal.truncate_pages over the range, as truncate_pagecache_range);
4. free the blocks (the filesystem's punch_backing: the host's fallocate,
   or ext2's block map), then let go of the lock.

Without step 1 the pages dropped in 3 may be read back in from blocks that
4 is about to free (ea3d7209ca01, 730633f0b7f9; scenarios/known/punch.py).
Allocation changes no cached byte: it asks the filesystem for blocks
(allocate_backing), and a grown file's new bytes read as zeros, as after a
truncate that grows it.
"""

from __future__ import annotations

import errno
from typing import Protocol

from pagemap.hw.memory import PGMASK, PGSHIFT, PGSIZE
from pagemap.kernel.errors import FileTooLarge, InvalidArgument, KernelError
from pagemap.kernel.owner import as_int
from pagemap.kernel.page import PG_DIRTY, lock_page, unlock_page
from pagemap.kernel.pagemap import PageMap
from pagemap.sync.atomic import AtomicWord
from pagemap.sync.core import WRITE
from pagemap.sync.executor import Executor

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_NO_HIDE_STALE = 0x04
FALLOC_FL_COLLAPSE_RANGE = 0x08
FALLOC_FL_ZERO_RANGE = 0x10
FALLOC_FL_INSERT_RANGE = 0x20
FALLOC_FL_UNSHARE_RANGE = 0x40
# What vfs_fallocate lets through to a filesystem (FALLOC_FL_SUPPORTED_MASK).
SUPPORTED_MASK = (
    FALLOC_FL_KEEP_SIZE
    | FALLOC_FL_PUNCH_HOLE
    | FALLOC_FL_COLLAPSE_RANGE
    | FALLOC_FL_ZERO_RANGE
    | FALLOC_FL_INSERT_RANGE
    | FALLOC_FL_UNSHARE_RANGE
)
PUNCH = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
# The modes our filesystems implement.
MODES = (0, FALLOC_FL_KEEP_SIZE, PUNCH)


class Inode(Protocol):
    """What fallocate uses of an inode (kernel/vfs.py's Inode, which imports
    this module: the inode calls in, so it is named by shape here)."""

    @property
    def executor(self) -> Executor: ...

    @property
    def size_word(self) -> AtomicWord: ...

    @property
    def mapping(self) -> PageMap: ...

    def _size_limit(self, end: int) -> int: ...

    def _zero_cached(self, lo: int, hi: int) -> None: ...

    def allocate_backing(self, mode: int, offset: int, length: int) -> None: ...

    def punch_backing(self, offset: int, length: int) -> None: ...


def _unsupported(what: str) -> KernelError:
    return KernelError(what, errno=errno.EOPNOTSUPP)


def check_fallocate(
    inode: Inode, what: str, mode: object, offset: object, length: object, writable: bool
) -> tuple[int, int, int]:
    """(mode, offset, length) as ints, or the error vfs_fallocate gives."""
    mode = as_int(mode, what, "the mode")
    offset = as_int(offset, what, "the offset")
    length = as_int(length, what, "the length")
    if offset < 0 or length <= 0:
        raise InvalidArgument(
            f"{what}: offset {offset} may not be negative and length {length} must be positive"
        )
    if mode & ~SUPPORTED_MASK or mode < 0:
        raise _unsupported(f"{what}: mode {mode:#x} has bits fallocate does not know")
    if mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE) == (
        FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE
    ):
        raise _unsupported(f"{what}: PUNCH_HOLE and ZERO_RANGE exclude each other")
    if mode & FALLOC_FL_PUNCH_HOLE and not mode & FALLOC_FL_KEEP_SIZE:
        raise _unsupported(f"{what}: PUNCH_HOLE needs KEEP_SIZE")
    for alone in (FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE):
        if mode & alone and mode & ~alone:
            raise InvalidArgument(f"{what}: mode {mode:#x} mixes COLLAPSE or INSERT with others")
    if mode & FALLOC_FL_UNSHARE_RANGE and mode & ~(FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_KEEP_SIZE):
        raise InvalidArgument(f"{what}: UNSHARE_RANGE goes with KEEP_SIZE only")
    if not writable:
        raise KernelError(f"{what}: the file is not open for writing", errno=errno.EBADF)
    limit = inode._size_limit(offset + length)
    if offset + length > limit:
        raise FileTooLarge(
            f"{what}: {offset}+{length} passes the largest size this file may have, {limit} bytes"
        )
    if mode not in MODES:
        raise _unsupported(f"{what}: mode {mode:#x} is not one this filesystem implements")
    return mode, offset, length


def fallocate_locked(inode: Inode, mode: int, offset: int, length: int) -> None:
    """The checked call, with i_rwsem held."""
    if mode == PUNCH:
        punch_hole(inode, offset, length)
        return
    size = inode.size_word.load()
    end = offset + length
    inode.allocate_backing(mode, offset, length)
    if not mode & FALLOC_FL_KEEP_SIZE and end > size:
        # Grown: the cached last page holds zeros past the old size already,
        # but a store through a shared mapping may have left bytes there.
        inode._zero_cached(size, end)
        inode.size_word.store(end)


def punch_hole(inode: Inode, offset: int, length: int) -> None:
    """Steps 1-4 of the module doc."""
    mapping = inode.mapping
    invalidate = mapping.invalidate_lock
    invalidate.down_write()
    try:
        size = inode.size_word.load()
        end = min(offset + length, size)  # nothing is cached past the end
        if offset < end:
            first = (offset + PGMASK) >> PGSHIFT  # the first whole page
            last = end >> PGSHIFT  # past the last whole page
            if offset & PGMASK:
                _zero_in_page(inode, offset, min(end, first << PGSHIFT))
            if end & PGMASK and (end >> PGSHIFT) >= first:
                _zero_in_page(inode, max(offset, last << PGSHIFT), end)
            if last > first:
                mapping.truncate_pages(first, last - first)
        inode.punch_backing(offset, length)
    finally:
        invalidate.up_write()


def _zero_in_page(inode: Inode, lo: int, hi: int) -> None:
    """Zero [lo, hi), within one page, if that page is cached; dirty it."""
    mapping = inode.mapping
    page = mapping.find_page(lo >> PGSHIFT)
    if page is None:
        return
    lock_page(page)
    try:
        start = lo & PGMASK
        stop = start + (hi - lo)
        assert stop <= PGSIZE
        inode.executor.point("frame_write", page.ppn, WRITE)
        page.data[start:stop] = bytes(stop - start)
        page.flags.fetch_or(PG_DIRTY)
    finally:
        unlock_page(page)
        mapping.put_page(page)


__all__ = [
    "FALLOC_FL_COLLAPSE_RANGE",
    "FALLOC_FL_INSERT_RANGE",
    "FALLOC_FL_KEEP_SIZE",
    "FALLOC_FL_NO_HIDE_STALE",
    "FALLOC_FL_PUNCH_HOLE",
    "FALLOC_FL_UNSHARE_RANGE",
    "FALLOC_FL_ZERO_RANGE",
    "MODES",
    "PUNCH",
    "check_fallocate",
    "fallocate_locked",
    "punch_hole",
]
