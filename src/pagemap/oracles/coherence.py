"""Coherence: the shadow, what every byte of a file must read as now.

A `Shadow` starts as the file's bytes and applies every store and write in
the order they land (under the sequentially consistent SimExecutor, the
order of their steps), so at any moment it holds "the latest store" to every
offset.  Scenarios stamp every 8-byte slot they write with (page, slot,
version), so a wrong read says which write it saw.  Private mappings keep
their own stores apart (`private`), never in the shadow.

It keeps only the pages written since it began; every other byte is the
file's original, asked of `original(offset, n)` when wanted.  A file of a
gibibyte that a run touches in a few places then costs what those places
cost, and its original bytes may be computed rather than held
(workload/data.py's generated files).

Several tasks may write one Shadow at once (`pagemap run` under threads):
each writes its own bytes, and a page comes into the shadow by one atomic
dict.setdefault, so two writers of one page share its copy.
"""

from __future__ import annotations

from collections.abc import Callable

from pagemap.hw.memory import PGSHIFT, PGSIZE

SLOT = 8

# (offset, n) -> the file's n original bytes at offset (all within its size).
Original = Callable[[int, int], bytes]


def stamp(page: int, slot: int, version: int) -> bytes:
    """Eight bytes naming (page, slot, version); never all zeros."""
    value = (page & 0xFFFF) | (slot & 0x1FF) << 16 | (version & 0xFFFFFF) << 32 | 1 << 63
    return value.to_bytes(SLOT, "little")


def describe(data: bytes) -> str:
    """ "v3 of page 1 slot 2" for a stamp ("the original bytes of ..." for
    version 0, what a file holds before any store), else the hex."""
    if len(data) != SLOT:
        return data.hex()
    v = int.from_bytes(data, "little")
    if not v >> 63:
        return data.hex()
    version, where = (v >> 32) & 0xFFFFFF, f"page {v & 0xFFFF} slot {(v >> 16) & 0x1FF}"
    return f"v{version} of {where}" if version else f"the original bytes of {where}"


def mismatch(what: str, offset: int, got: bytes, want: bytes) -> str | None:
    """None if a read (`what`, of file `offset`) returned `want`; else a
    sentence: a short count, or the first 8-byte slot that differs, with
    what was read there and what was last written."""
    if len(got) != len(want):
        return (
            f"short count: {what} at file offset {offset:#x} returned {len(got)} of "
            f"{len(want)} bytes, inside the file"
        )
    if got == want:
        return None
    first = next(i for i in range(len(got)) if got[i] != want[i])
    at = first - (offset + first) % SLOT  # the slot it lies in, as writers stamp them
    at = max(at, 0)
    return (
        f"coherence: {what} at file offset {offset + at:#x} read "
        f"{describe(got[at : at + SLOT])} but {describe(want[at : at + SLOT])} was last "
        "written there"
    )


class Shadow:
    """The expected bytes of one file, and the version of every slot written."""

    def __init__(self, data: bytes) -> None:
        """A shadow of a file whose bytes are `data`."""
        held = bytes(data)
        self._init(len(held), lambda offset, n: held[offset : offset + n])

    @classmethod
    def of(cls, size: int, original: Original) -> Shadow:
        """A shadow of a file of `size` bytes whose original bytes `original`
        gives on demand."""
        shadow = cls.__new__(cls)
        shadow._init(size, original)
        return shadow

    def _init(self, size: int, original: Original) -> None:
        self.size = size
        self._original = original
        self._original_end = size  # the original shows below this; zeros from here
        self._pages: dict[int, bytearray] = {}  # page index -> its bytes, once written
        self.versions: dict[int, int] = {}  # offset of a slot -> its latest version

    @property
    def data(self) -> bytes:
        """The whole file as it must read now."""
        return self.expect(0, self.size)

    def next_stamp(self, offset: int) -> bytes:
        """The bytes the next write of the slot at `offset` writes (counted now)."""
        version = self.versions.get(offset, 0) + 1
        self.versions[offset] = version
        return stamp(offset >> PGSHIFT, (offset % PGSIZE) // SLOT, version)

    def write(self, offset: int, data: bytes) -> None:
        end = offset + len(data)
        if end > self.size:
            self.size = end
        pos = offset
        while pos < end:
            index, start = pos >> PGSHIFT, pos & (PGSIZE - 1)
            n = min(end - pos, PGSIZE - start)
            self._page(index)[start : start + n] = data[pos - offset : pos - offset + n]
            pos += n

    def expect(self, offset: int, n: int) -> bytes:
        """The `n` bytes at `offset` as a read must return them (none past the end)."""
        end = min(offset + n, self.size)
        parts: list[bytes] = []
        pos = offset
        original_from = -1  # where a stretch of pages never written began
        while pos < end:
            index, start = pos >> PGSHIFT, pos & (PGSIZE - 1)
            take = min(end - pos, PGSIZE - start)
            page = self._pages.get(index)
            if page is None:
                if original_from < 0:
                    original_from = pos
            else:
                if original_from >= 0:  # asked for at once: a generated file computes runs fast
                    parts.append(self._as_original(original_from, pos - original_from))
                    original_from = -1
                parts.append(bytes(page[start : start + take]))
            pos += take
        if original_from >= 0:
            parts.append(self._as_original(original_from, max(end, offset) - original_from))
        return b"".join(parts)

    def truncate(self, size: int) -> None:
        if size < self.size:
            last = size >> PGSHIFT
            for index in [i for i in self._pages if i > last]:
                del self._pages[index]
            if size & (PGSIZE - 1) or last in self._pages:
                # Bytes past the new end read as zero if the file grows again.
                page = self._page(last)
                page[size & (PGSIZE - 1) :] = bytes(PGSIZE - (size & (PGSIZE - 1)))
            self._original_end = min(self._original_end, size)
        self.size = size

    def page(self, index: int) -> bytes:
        """Page `index` as a cached page must hold it (zeros past the end)."""
        return self.pages(index, 1)

    def pages(self, first: int, n: int) -> bytes:
        """n pages from page `first`, as cached pages must hold them."""
        got = self.expect(first * PGSIZE, n * PGSIZE)
        return got if len(got) == n * PGSIZE else got + bytes(n * PGSIZE - len(got))

    def _page(self, index: int) -> bytearray:
        """Page `index`'s own copy, made from what it reads as now."""
        page = self._pages.get(index)
        if page is None:
            start = index * PGSIZE
            fresh = bytearray(self._as_original(start, PGSIZE))
            page = self._pages.setdefault(index, fresh)
        return page

    def _as_original(self, offset: int, n: int) -> bytes:
        """`n` bytes at `offset` of a page never written: the original below
        its end, zeros after."""
        have = max(0, min(n, self._original_end - offset))
        got = self._original(offset, have) if have else b""
        return got + bytes(n - have)
