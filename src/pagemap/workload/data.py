"""The bytes the workload writes: 16-byte cells that say where they belong.

A cell is its own file offset (8 bytes), the writer (2 bytes: 0 for the
original file) and the writer's sequence number (6 bytes).  A byte that lands
at the wrong offset, or a page that shows up in the wrong place, is visible
at a glance in any dump.
"""

from __future__ import annotations

import os

CELL = 16
_CHUNK = 1 << 20


def cells(offset: int, length: int, writer: int, seq: int) -> bytes:
    """`length` bytes of cells for [offset, offset + length); cell-aligned."""
    assert offset % CELL == 0 and length % CELL == 0
    tail = writer.to_bytes(2, "little") + seq.to_bytes(6, "little")
    return b"".join((offset + i).to_bytes(8, "little") + tail for i in range(0, length, CELL))


def generate(path: str, size: int) -> None:
    """Write a file of original cells (writer 0, sequence 0)."""
    with open(path, "wb") as f:
        for off in range(0, size, _CHUNK):
            n = min(_CHUNK, size - off)
            f.write(cells(off, n - n % CELL, 0, 0) + bytes(n % CELL))


def copy(src: str, dst: str) -> int:
    """Copy a user's file for the run (never touched in place); its size."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while block := fin.read(_CHUNK):
            fout.write(block)
    return os.path.getsize(dst)
