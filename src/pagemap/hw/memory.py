"""Physical memory: page frames of PGSIZE bytes carved out of one buffer.

Frame number (ppn) n lives at bytes [n * PGSIZE, (n + 1) * PGSIZE).  The
hardware knows nothing of who owns a frame; the kernel's page allocator does.
"""

from __future__ import annotations

import mmap

PGSHIFT = 12
PGSIZE = 1 << PGSHIFT
PGMASK = PGSIZE - 1  # the offset within a page
# Up to this many bytes of frames, memory is a bytearray rather than a mapping.
SMALL_MEMORY = 256 * PGSIZE

_UNITS = {
    "": 1,
    "B": 1,
    "K": 1 << 10,
    "KB": 1 << 10,
    "KIB": 1 << 10,
    "M": 1 << 20,
    "MB": 1 << 20,
    "MIB": 1 << 20,
    "G": 1 << 30,
    "GB": 1 << 30,
    "GIB": 1 << 30,
    "T": 1 << 40,
    "TB": 1 << 40,
    "TIB": 1 << 40,
}


def parse_size(size: int | str) -> int:
    """Bytes from an int or a string such as "64MiB", "4096" or "2G"."""
    if isinstance(size, int):
        nbytes = size
    else:
        text = size.strip().upper()
        digits = text.rstrip("KMGTIB")
        unit = text[len(digits) :]
        if not digits.isdigit() or unit not in _UNITS:
            raise ValueError(f"cannot read {size!r} as a size (try 4096, 64KiB, 64MiB or 1GiB)")
        nbytes = int(digits) * _UNITS[unit]
    if nbytes < 0:
        raise ValueError(f"a size cannot be negative: {size!r}")
    return nbytes


class PhysicalMemory:
    """`nr_frames` frames of PGSIZE bytes, zero-filled."""

    def __init__(self, nbytes: int) -> None:
        if nbytes % PGSIZE:
            raise ValueError(f"memory size {nbytes} is not a multiple of the page size {PGSIZE}")
        if nbytes < 2 * PGSIZE:
            raise ValueError(
                f"memory of {nbytes} bytes is too small: frame 0 is reserved, "
                "so at least two frames are needed"
            )
        self.nr_frames = nbytes // PGSIZE
        # Anonymous memory from the host, zero pages until first written: a
        # machine of 1 GiB costs the host what its frames hold, not 1 GiB up
        # front (a bytearray is zero-filled, every byte, as it is made).  A
        # small machine (the checker builds one per schedule) takes a
        # bytearray: zeroing a few frames costs less than mapping and unmapping.
        self._buf: mmap.mmap | bytearray
        if nbytes <= SMALL_MEMORY:
            self._buf = bytearray(nbytes)
        else:
            try:
                self._buf = mmap.mmap(-1, nbytes)
            except OSError as exc:
                raise MemoryError(f"the host cannot map {nbytes} bytes of frames: {exc}") from None
        # The one view of all frames; a frame's view is a slice of it, made on
        # use (a view kept per frame would cost more than the page's metadata).
        self.view = memoryview(self._buf)

    def frame(self, ppn: int) -> memoryview:
        """The PGSIZE bytes of frame `ppn`, writable in place."""
        if not 0 <= ppn < self.nr_frames:
            raise IndexError(f"frame {ppn} is outside memory (0..{self.nr_frames - 1})")
        start = ppn << PGSHIFT
        return self.view[start : start + PGSIZE]
