"""Reading a 64 MiB file from an ext2 image through pagemap, against os.pread.

The image is made by mke2fs -d (4 KiB blocks) from a directory holding the
file; the baseline reads the same bytes from that host file.  Both read the
whole file in 1 MiB preads, rounds interleaved, best of several rounds:

- warm: every page already in the page cache (ours; the host's for os.pread);
- cold: ours freshly mounted (nothing cached: every page is a readpage that
  maps its block through the inode's block map and reads it from the image),
  with the host's cache of the image dropped too (posix_fadvise DONTNEED), and
  the host file's dropped before each os.pread round.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Callable

from bench.harness import Report
from pagemap import PGSIZE, Machine, e2fsprogs

FILE_BYTES = 64 << 20
CHUNK = 1 << 20
ROUNDS = 3
MIB = 1 << 20


def _drop_host_cache(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(report: Report) -> None:
    with tempfile.TemporaryDirectory(prefix="pagemap-bench-ext2-") as tmp:
        src = os.path.join(tmp, "src")
        os.mkdir(src)
        host_path = os.path.join(src, "data.bin")
        with open(host_path, "wb") as f:
            f.write(random.Random(3).randbytes(FILE_BYTES))
        image = os.path.join(tmp, "fs.img")
        e2fsprogs.mkfs(image, FILE_BYTES + (16 << 20), 4096, source=src)
        machine = Machine(cores=1, memory=FILE_BYTES + (8 << 20) + PGSIZE)
        fs = machine.mount(image, "r")
        fd = os.open(host_path, os.O_RDONLY)

        def ours() -> None:
            with fs.open("/data.bin") as f:
                for off in range(0, FILE_BYTES, CHUNK):
                    f.pread(CHUNK, off)

        def host() -> None:
            for off in range(0, FILE_BYTES, CHUNK):
                os.pread(fd, CHUNK, off)

        try:
            ours()  # warm both caches
            host()
            warm = warm_host = float("inf")
            for _ in range(ROUNDS):
                warm = min(warm, _timed(ours))
                warm_host = min(warm_host, _timed(host))
            cold = cold_host = float("inf")
            for _ in range(ROUNDS):
                fs.unmount()
                _drop_host_cache(image)
                fs = machine.mount(image, "r")
                cold = min(cold, _timed(ours))
                _drop_host_cache(host_path)
                cold_host = min(cold_host, _timed(host))
            fs.unmount()
        finally:
            os.close(fd)
    report.add(
        "os.pread 64 MiB file, 1 MiB reads, warm (baseline)", FILE_BYTES / warm_host / MIB, "MiB/s"
    )
    report.add(
        "ext2 file read through pagemap, warm cache",
        FILE_BYTES / warm / MIB,
        "MiB/s",
        baseline=FILE_BYTES / warm_host / MIB,
    )
    report.add(
        "os.pread 64 MiB file, host cache dropped (baseline)", FILE_BYTES / cold_host / MIB, "MiB/s"
    )
    report.add(
        "ext2 file read through pagemap, cold (fresh mount, host cache dropped)",
        FILE_BYTES / cold / MIB,
        "MiB/s",
        baseline=FILE_BYTES / cold_host / MIB,
    )
