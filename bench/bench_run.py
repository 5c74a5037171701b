"""`pagemap run` operations per second, against the same operations on Linux.

The baseline runs the very same Worker (the same seeded mix of stores,
loads, preads, pwrites and msyncs) against the host kernel through Python's
mmap and os modules, on the same generated file; there, munmap/mprotect of a
window are no-ops, since Python's mmap cannot unmap or protect part of a map.
"""

from __future__ import annotations

import mmap as pymmap
import os
import tempfile
import time
from typing import cast

from bench.harness import Report
from pagemap.kernel.mman import MAP_PRIVATE
from pagemap.kernel.proc import Proc
from pagemap.kernel.vfs import File
from pagemap.workload import data
from pagemap.workload.runner import run_workload
from pagemap.workload.spec import Spec
from pagemap.workload.worker import Worker

OPS = 20_000


class LinuxFile:
    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size

    def pread(self, n: int, offset: int) -> bytes:
        return os.pread(self.fd, n, offset)

    def pwrite(self, data: bytes, offset: int) -> int:
        return os.pwrite(self.fd, data, offset)


class LinuxProc:
    """Just enough of Proc over real mappings: addresses are map ids << 40."""

    def __init__(self) -> None:
        self.maps: list[pymmap.mmap] = []
        self.pid = 0

    def mmap(
        self,
        length: int,
        prot: int,
        flags: int,
        file: LinuxFile,
        offset: int = 0,
        addr: int | None = None,
    ) -> int:
        if addr is not None:
            return addr  # a MAP_FIXED remap of a window: the map is still there
        access = pymmap.ACCESS_COPY if flags & MAP_PRIVATE else pymmap.ACCESS_WRITE
        self.maps.append(pymmap.mmap(file.fd, length, access=access, offset=offset))
        return len(self.maps) << 40

    def _at(self, addr: int) -> tuple[pymmap.mmap, int]:
        return self.maps[(addr >> 40) - 1], addr & ((1 << 40) - 1)

    def load(self, addr: int, n: int) -> bytes:
        m, off = self._at(addr)
        return bytes(m[off : off + n])

    def store(self, addr: int, data: bytes) -> None:
        m, off = self._at(addr)
        m[off : off + len(data)] = data

    def msync(self, addr: int, length: int) -> None:
        m, off = self._at(addr)
        start = off & ~(pymmap.PAGESIZE - 1)
        m.flush(start, off + length - start)

    def munmap(self, addr: int, length: int) -> None:
        pass

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        pass


def linux_ops_per_second(spec: Spec) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.bin")
        data.generate(path, spec.file_size)
        with open(path, "rb") as f:
            shadow = bytearray(f.read())
        fd = os.open(path, os.O_RDWR)
        try:
            file = LinuxFile(fd, spec.file_size)
            layout = spec.layout()
            problems: list[str] = []
            workers = [
                Worker(
                    w,
                    cast(Proc, LinuxProc()),
                    cast(File, file),
                    layout,
                    shadow,
                    spec.seed,
                    spec.ops // spec.procs,
                    lambda n: None,
                    problems,
                )
                for w in range(spec.procs)
            ]
            t0 = time.perf_counter()
            for w in workers:
                w.run()
            elapsed = time.perf_counter() - t0
            assert not problems, problems[:3]
            return spec.ops / elapsed
        finally:
            os.close(fd)


def run(report: Report) -> None:
    threads = Spec.build(executor="threads", ops=OPS)
    linux = linux_ops_per_second(threads)
    report.add("same op mix on Linux (mmap+os), 1 thread (baseline)", linux, "op/s")
    for spec in (threads, Spec.build(executor="sim", ops=OPS)):
        result = run_workload(spec)
        assert result.ok, [v for v in result.verdicts if not v.ok]
        report.add(
            f"pagemap run ops/s, executor {spec.executor}",
            result.ops_done / result.elapsed,
            "op/s",
            baseline=linux,
        )
