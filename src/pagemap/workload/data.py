"""The bytes the workload writes: 16-byte cells that say where they belong.

A cell is its own file offset (8 bytes), the writer (2 bytes: 0 for the
original file) and the writer's sequence number (6 bytes).  A byte that lands
at the wrong offset, or a page that shows up in the wrong place, is visible
at a glance in any dump.

A generated file is cells of writer 0, sequence 0, with zeros in a last
partial cell.  `Generated` computes any part of it on demand, so a run on a
file of a gibibyte neither holds its bytes nor spends a Python loop on each
cell: a block of 2^k bytes at a multiple of 2^k is the block at offset 0 with
the high bits of its base OR'd into each cell's offset, byte column by byte
column (the low k bits of a cell's offset are the block's own, its high bits
the base's, so no bit is set by both).
"""

from __future__ import annotations

import os

from pagemap.hw.memory import PGSIZE

CELL = 16
_CHUNK = 1 << 20
_OFFSET_BYTES = 8  # the bytes of a cell that hold its offset


def cells(offset: int, length: int, writer: int, seq: int) -> bytes:
    """`length` bytes of cells for [offset, offset + length); cell-aligned."""
    assert offset % CELL == 0 and length % CELL == 0
    tail = writer.to_bytes(2, "little") + seq.to_bytes(6, "little")
    return b"".join((offset + i).to_bytes(8, "little") + tail for i in range(0, length, CELL))


class Generated:
    """The original bytes of a generated file of `size` bytes."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._cells_end = size - size % CELL  # zeros from here: a last partial cell
        self._templates: dict[int, bytes] = {}  # block size -> the block at offset 0
        self._or_tables: dict[int, bytes] = {}  # a byte -> bytes.translate's table for x | it

    def read(self, offset: int, n: int) -> bytes:
        """The bytes in [offset, offset + n), or fewer at the end of the file."""
        end = min(offset + n, self.size)
        if offset >= end:
            return b""
        # Pages for the reads of a run (a few KiB), mebibytes for whole files.
        block = PGSIZE if end - offset <= 16 * PGSIZE else _CHUNK
        parts: list[bytes | bytearray] = []
        pos = offset
        stop = min(end, self._cells_end)
        while pos < stop:
            base = pos - pos % block
            take = min(stop, base + block) - pos
            parts.append(self._block(base, block)[pos - base : pos - base + take])
            pos += take
        parts.append(bytes(end - max(offset, stop)))
        return b"".join(parts)

    def write_to(self, path: str) -> None:
        """Write the whole file at `path`."""
        with open(path, "wb") as f:
            for off in range(0, self._cells_end - self._cells_end % _CHUNK, _CHUNK):
                f.write(self._block(off, _CHUNK))
            last = self._cells_end - self._cells_end % _CHUNK
            f.write(self.read(last, self.size - last))

    def _block(self, base: int, size: int) -> bytes | bytearray:
        """The `size` bytes at `base`, a multiple of `size` (a power of two)."""
        template = self._templates.get(size)
        if template is None:
            template = self._templates[size] = cells(0, size, 0, 0)
        if not base:
            return template
        out = bytearray(template)
        count = size // CELL
        low_bits = size.bit_length() - 1  # the block's own bits of an offset
        for j in range(_OFFSET_BYTES):
            byte = (base >> (8 * j)) & 0xFF
            if not byte:
                continue
            if 8 * j >= low_bits:  # every cell of the block has the base's byte here
                out[j::CELL] = bytes((byte,)) * count
            else:
                table = self._or_tables.get(byte)
                if table is None:
                    table = self._or_tables[byte] = bytes(b | byte for b in range(256))
                out[j::CELL] = template[j::CELL].translate(table)
        return out


def generate(path: str, size: int) -> None:
    """Write a file of original cells (writer 0, sequence 0)."""
    Generated(size).write_to(path)


def copy(src: str, dst: str) -> int:
    """Copy a user's file for the run (never touched in place); its size."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while block := fin.read(_CHUNK):
            fout.write(block)
    return os.path.getsize(dst)
