"""Reading a 64 MiB file from an ext2 image through pagemap, against os.pread.

The image is made by mke2fs -d (4 KiB blocks) from a directory holding the
file; the baseline reads the same bytes from that host file.  Both read the
whole file in 1 MiB preads, in paired rounds (the harness's rule: the
median of each side, and of the per-round ratios):

- warm: every page already in the page cache (ours; the host's for os.pread);
- cold: ours freshly mounted (nothing cached: every page is a readpage that
  maps its block through the inode's block map and reads it from the image),
  with the host's cache of the image dropped too (posix_fadvise DONTNEED), and
  the host file's dropped before each os.pread round (both setups outside
  the clock).
"""

from __future__ import annotations

import os
import random
import tempfile

from bench.harness import Report, paired
from pagemap import PGSIZE, Machine, e2fsprogs

FILE_BYTES = 64 << 20
CHUNK = 1 << 20
ROUNDS = 5
MIB = 1 << 20


def _drop_host_cache(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


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

        def ours(_: int) -> None:
            with fs.open("/data.bin") as f:
                for off in range(0, FILE_BYTES, CHUNK):
                    f.pread(CHUNK, off)

        def host(_: int) -> None:
            for off in range(0, FILE_BYTES, CHUNK):
                os.pread(fd, CHUNK, off)

        def remount() -> None:
            nonlocal fs
            fs.unmount()
            _drop_host_cache(image)
            fs = machine.mount(image, "r")

        try:
            ours(1)  # warm both caches
            host(1)
            warm = paired(ours, host, 1, ROUNDS)
            cold = paired(
                ours,
                host,
                1,
                ROUNDS,
                setup=remount,
                baseline_setup=lambda: _drop_host_cache(host_path),
            )
            fs.unmount()
        finally:
            os.close(fd)
    mib = FILE_BYTES / MIB  # MiB per read of the file
    report.add("os.pread 64 MiB file, 1 MiB reads, warm (baseline)", mib / warm.baseline, "MiB/s")
    report.add_rate("ext2 file read through pagemap, warm cache", warm, "MiB/s", mib)
    report.add("os.pread 64 MiB file, host cache dropped (baseline)", mib / cold.baseline, "MiB/s")
    report.add_rate(
        "ext2 file read through pagemap, cold (fresh mount, host cache dropped)",
        cold,
        "MiB/s",
        mib,
    )
