"""What `pagemap run` runs on: a host file (the default, or a copy of --file),
or a file inside a copy of an ext2 image (--image).

A target opens the job's file on the run's Machine and knows the bytes it
starts with (the shadow the oracles compare against), and, once the run is
over and the file closed, reads back what its backing store holds, by means
independent of the page cache: the host file itself (read as it is asked
for, so a file of a gibibyte is never held whole), or debugfs on the
unmounted image, after `e2fsck -fn` has had its say (the "filesystem"
oracle).

On an image the job uses the regular file IMAGE_FILE (/data.bin): if the
image has one, its bytes (read with debugfs) are the starting bytes and its
size the file size; if not, it is created through the driver, --file-size
bytes of generated cells, and synced before the run begins.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pagemap import e2fsprogs
from pagemap.hw.memory import PGSIZE
from pagemap.kernel.fs.ext2 import Ext2FS
from pagemap.kernel.radix import ALL_PAGES
from pagemap.kernel.vfs import File
from pagemap.machine import Machine
from pagemap.workload import data

IMAGE_FILE = "/data.bin"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Stored:
    """What a backing store holds: its size, and `read(offset, n)`, fewer
    bytes at its end."""

    size: int
    read: Callable[[int, int], bytes]

    def pages(self, first: int, n: int) -> bytes:
        """n pages from page `first`, zeros past the end."""
        got = self.read(first * PGSIZE, n * PGSIZE)
        return got if len(got) == n * PGSIZE else got + bytes(n * PGSIZE - len(got))


class Target(Protocol):
    file: File
    oracles: tuple[str, ...]  # oracles beyond the job's own

    def settle(self) -> None:
        """Called once every process has exited, before the final fsync."""
        ...

    def read_back(self, problems: dict[str, list[str]]) -> Stored | None:
        """The file on its backing store, after the file is closed; problems
        found on the way go under their oracle's name."""
        ...


class HostTarget:
    oracles: tuple[str, ...] = ()

    def __init__(self, machine: Machine, path: str) -> None:
        self.path = path
        self.file: File = machine.open(path, "r+")

    def settle(self) -> None:
        pass

    def read_back(self, problems: dict[str, list[str]]) -> Stored | None:
        path = self.path

        def read(offset: int, n: int) -> bytes:
            with open(path, "rb") as f:
                return os.pread(f.fileno(), n, offset)

        return Stored(os.path.getsize(path), read)


class ImageTarget:
    oracles: tuple[str, ...] = ("filesystem",)

    def __init__(self, machine: Machine, image: str, fs: Ext2FS) -> None:
        self.image = image
        self.fs = fs
        self.machine = machine
        self.file: File = fs.open(IMAGE_FILE, "r+")

    def settle(self) -> None:
        """Evict the cache first.  The run is over, so no flusher makes room,
        and ext2's writeback needs free frames for the metadata buffers it
        reads (a host file's does not): one removal pass frees every clean
        page even where a dirty one cannot yet be written."""
        for pm in [self.file.mapping, self.fs.vol.dev.mapping]:
            with contextlib.suppress(OSError):
                pm.remove_contig(0, ALL_PAGES)

    def read_back(self, problems: dict[str, list[str]]) -> Stored | None:
        try:
            self.fs.unmount()
        except OSError as exc:
            problems["filesystem"].append(f"unmounting the image failed: {exc}")
            return None
        result = e2fsprogs.fsck(self.image)
        if not result.clean:
            last = [line for line in result.output.splitlines() if line.strip()][-3:]
            problems["filesystem"].append(
                f"e2fsck -fn exited {result.returncode} on the image: {' / '.join(last)}"
            )
        held = e2fsprogs.cat(self.image, IMAGE_FILE)
        return Stored(len(held), lambda offset, n: held[offset : offset + n])


def copy_image(src: str, dst: str) -> None:
    """Copy an image for the run, keeping its holes (the user's image itself
    is never modified)."""
    size = os.path.getsize(src)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while block := fin.read(_CHUNK):
            if block.count(0) == len(block):
                fout.seek(len(block), os.SEEK_CUR)
            else:
                fout.write(block)
        fout.truncate(size)


def image_contents(image: str) -> bytes | None:
    """The job's file in an image, as debugfs reads it; None if it has none."""
    listing = e2fsprogs.ls(image, "/")
    if not any(e.name == IMAGE_FILE.lstrip("/") for e in listing):
        return None
    return e2fsprogs.cat(image, IMAGE_FILE)


def create_in_image(image: str, size: int, memory: int) -> bytes:
    """Make the job's file in an image, `size` bytes of original cells, on a
    machine of its own whose flusher makes room as the file is written; the
    bytes written."""
    machine = Machine(cores=1, memory=memory, executor="threads")
    fs = machine.mount(image, "rw")
    out = bytearray()
    generated = data.Generated(size)

    def write() -> None:
        with fs.create(IMAGE_FILE) as f:
            for off in range(0, size, _CHUNK):
                n = min(_CHUNK, size - off)
                chunk = generated.read(off, n)
                done = 0
                while done < n:  # a short write (no frame free for a moment): go on
                    done += f.pwrite(chunk[done:], off + done)
                out.extend(chunk)
            f.fsync()

    machine.start_flusher(0.01)
    machine.spawn(write, name="create")
    try:
        machine.run()
    finally:
        fs.unmount()
    return bytes(out)
