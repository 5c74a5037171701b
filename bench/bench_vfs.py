"""Files through the page cache against the host's own pread.

- 4 KiB random pread on a warm cache, per call, against os.pread of the same
  offsets of the same (host-cached) file;
- sequential read throughput, warm and cold, against os.pread of the same
  file in the same 128 KiB calls (each figure the median of paired rounds,
  the harness's rule);
- bytes of memory each cached page costs beyond its 4096: the peak RSS of a
  fresh interpreter that caches many pages, less its peak before the machine
  existed, per page (the machine's per-frame records are part of the cost).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.harness import Paired, Report, paired
from pagemap import PGSIZE, Machine
from pagemap.kernel.hostfs import HostFile

FILE_PAGES = 4096  # 16 MiB
CHUNK = 128 * 1024  # sequential read size
RSS_PAGES = 100_000  # 400 MB cached for the memory figure (the 100k pages)
REPO = Path(__file__).resolve().parent.parent


def make_file(dirname: str, pages: int) -> str:
    path = os.path.join(dirname, "data.bin")
    rng = random.Random(1)
    with open(path, "wb") as out:
        for _ in range(0, pages, 1024):  # randbytes takes at most 2**28 bytes at once
            out.write(rng.randbytes(1024 * PGSIZE))
        out.truncate(pages * PGSIZE)
    return path


def warm_machine(path: str, executor: str) -> tuple[Machine, HostFile]:
    machine = Machine(cores=1, memory=(FILE_PAGES + 1) * PGSIZE, executor=executor)
    f = machine.open(path, "r")
    for off in range(0, FILE_PAGES * PGSIZE, CHUNK):
        f.pread(CHUNK, off)
    return machine, f


def random_offsets(n: int) -> list[int]:
    rng = random.Random(7)
    return [rng.randrange(FILE_PAGES) * PGSIZE for _ in range(n)]


def random_pread(path: str, executor: str) -> Paired:
    """Seconds per VFS pread against per os.pread, of 4 KiB at random pages."""
    _, f = warm_machine(path, executor)
    offsets = random_offsets(20_000)
    fd = os.open(path, os.O_RDONLY)
    try:

        def vfs(n: int) -> None:
            pread = f.pread
            for off in offsets[:n]:
                pread(PGSIZE, off)

        def host(n: int) -> None:
            pread = os.pread
            for off in offsets[:n]:
                pread(fd, PGSIZE, off)

        host(len(offsets))  # the host's cache is warm too
        return paired(vfs, host, len(offsets))
    finally:
        os.close(fd)


def sequential(path: str, executor: str) -> tuple[Paired, Paired]:
    """Seconds per whole-file read in 128 KiB calls, warm and then cold (a
    fresh machine each round), each against os.pread of the same calls."""
    nbytes = FILE_PAGES * PGSIZE
    _, f = warm_machine(path, executor)
    fd = os.open(path, os.O_RDONLY)
    state: dict[str, HostFile] = {}

    def read_vfs(_: int) -> None:
        pread = f.pread
        for off in range(0, nbytes, CHUNK):
            pread(CHUNK, off)

    def read_host(_: int) -> None:
        for off in range(0, nbytes, CHUNK):
            os.pread(fd, CHUNK, off)

    def fresh() -> None:
        machine = Machine(cores=1, memory=(FILE_PAGES + 1) * PGSIZE, executor=executor)
        state["f"] = machine.open(path, "r")

    def read_cold(_: int) -> None:
        pread = state["f"].pread
        for off in range(0, nbytes, CHUNK):
            pread(CHUNK, off)

    try:
        warm = paired(read_vfs, read_host, 1, rounds=7)
        cold = paired(read_cold, read_host, 1, rounds=5, setup=fresh, baseline_setup=lambda: None)
    finally:
        os.close(fd)
    return warm, cold


def peak_rss() -> int:
    """This process's peak resident set, in bytes (VmHWM).

    Not getrusage's ru_maxrss: Linux carries that across exec, so a child of
    a big parent would start at the parent's peak.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def rss_probe(path: str, pages: int, executor: str) -> dict[str, float]:
    """Run in a fresh interpreter: cache `pages` pages, report peak RSS bytes."""
    before = peak_rss()
    machine = Machine(cores=1, memory=(pages + 1) * PGSIZE, executor=executor)
    f = machine.open(path, "r")
    for off in range(0, pages * PGSIZE, CHUNK):
        f.pread(CHUNK, off)
    assert f.mapping.nr_pages == pages
    after = peak_rss()
    return {"before": before, "after": after, "pages": pages}


def bytes_per_page(path: str, executor: str) -> float:
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_vfs", "rss", path, str(RSS_PAGES), executor],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    probe = json.loads(out)
    return float((probe["after"] - probe["before"]) / probe["pages"])


def run(report: Report) -> None:
    with tempfile.TemporaryDirectory(prefix="pagemap-bench-") as dirname:
        path = make_file(dirname, max(FILE_PAGES, RSS_PAGES))
        rand = random_pread(path, "threads")
        report.add("os.pread 4 KiB random, warm (baseline)", rand.baseline * 1e6, "us/op")
        report.add_time("File.pread 4 KiB random, warm cache", rand, "us/op", 1e6)
        warm, cold = sequential(path, "threads")
        mib = FILE_PAGES * PGSIZE / (1 << 20)  # MiB per whole-file read
        report.add("os.pread sequential 128 KiB (baseline)", mib / warm.baseline, "MiB/s")
        report.add_rate("File.pread sequential 128 KiB, warm cache", warm, "MiB/s", mib)
        report.add_rate(
            "File.pread sequential 128 KiB, cold cache (a fresh machine; the host's "
            "cache warm on both sides)",
            cold,
            "MiB/s",
            mib,
        )
        for executor in ("threads", "sim"):
            total = bytes_per_page(path, executor)
            report.add(
                f"memory per cached page beyond 4096 B, {executor} (ratio to 4096)",
                total - PGSIZE,
                "B/page",
                baseline=PGSIZE,
            )


if __name__ == "__main__" and sys.argv[1:2] == ["rss"]:
    print(json.dumps(rss_probe(sys.argv[2], int(sys.argv[3]), sys.argv[4])))
