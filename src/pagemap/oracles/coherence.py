"""Coherence: the shadow, what every byte of a file must read as now.

A `Shadow` starts as the file's bytes and applies every store and write in
the order they land (under the sequentially consistent SimExecutor, the
order of their steps), so at any moment it holds "the latest store" to every
offset.  Scenarios stamp every 8-byte slot they write with (page, slot,
version), so a wrong read says which write it saw.  Private mappings keep
their own stores apart (`private`), never in the shadow.
"""

from __future__ import annotations

from pagemap.hw.memory import PGSHIFT, PGSIZE

SLOT = 8


def stamp(page: int, slot: int, version: int) -> bytes:
    """Eight bytes naming (page, slot, version); never all zeros."""
    value = (page & 0xFFFF) | (slot & 0x1FF) << 16 | (version & 0xFFFFFF) << 32 | 1 << 63
    return value.to_bytes(SLOT, "little")


def describe(data: bytes) -> str:
    """ "v3 of page 1 slot 2" for a stamp, else the hex."""
    if len(data) != SLOT:
        return data.hex()
    v = int.from_bytes(data, "little")
    if not v >> 63:
        return data.hex()
    return f"v{(v >> 32) & 0xFFFFFF} of page {v & 0xFFFF} slot {(v >> 16) & 0x1FF}"


class Shadow:
    """The expected bytes of one file, and the version of every slot written."""

    def __init__(self, data: bytes) -> None:
        self.data = bytearray(data)
        self.versions: dict[int, int] = {}  # offset of a slot -> its latest version

    def next_stamp(self, offset: int) -> bytes:
        """The bytes the next write of the slot at `offset` writes (counted now)."""
        version = self.versions.get(offset, 0) + 1
        self.versions[offset] = version
        return stamp(offset >> PGSHIFT, (offset % PGSIZE) // SLOT, version)

    def write(self, offset: int, data: bytes) -> None:
        end = offset + len(data)
        if end > len(self.data):
            self.data.extend(bytes(end - len(self.data)))
        self.data[offset:end] = data

    def expect(self, offset: int, n: int) -> bytes:
        return bytes(self.data[offset : offset + n])

    def truncate(self, size: int) -> None:
        if size < len(self.data):
            del self.data[size:]
        else:
            self.data.extend(bytes(size - len(self.data)))

    def page(self, index: int) -> bytes:
        """Page `index` as a cached page must hold it (zeros past the end)."""
        got = bytes(self.data[index * PGSIZE : (index + 1) * PGSIZE])
        return got + bytes(PGSIZE - len(got))
