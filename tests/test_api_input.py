"""Bad input to every public call, one row each: wrong types, objects of
another machine, closed objects, and sizes at and past every limit.

Each row runs against a fresh world of two machines and a closed one, and
asserts the exception's type and errno (None for a TypeError or ValueError,
which carry none), that no host file changed, and that the accounting of
both machines is clean after.  A row whose exception is None is a size at
its limit, which must be accepted.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pagemap import (
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    MAP_SHARED,
    PG_UPTODATE,
    PGSIZE,
    PROT_READ,
    PROT_WRITE,
    AlreadyClosed,
    BlockDevice,
    BufferHead,
    FileTooLarge,
    HostFile,
    InvalidArgument,
    KernelBug,
    KernelError,
    Machine,
    NoSuchProcess,
    NotMapped,
    OutOfMemory,
    Page,
    PageMap,
    Proc,
    SegmentationFault,
    WrongMachine,
)
from pagemap.check.schema import MAX_TRACE_BYTES
from pagemap.check.trace import Trace, TraceError
from pagemap.kernel.mm import USER_TOP
from pagemap.kernel.radix import RADIX_MAX_INDEX
from pagemap.machine import MAX_CORES
from tests.conftest import CountingOps

RW = PROT_READ | PROT_WRITE
FRAMES = 24
NOT_INT = ("1", 1.0, None)  # each a TypeError where an int is wanted


class ZeroOps:
    """A backing store of zeros that keeps nothing."""

    def readpage(self, pm: PageMap, page: Page) -> None:
        page.data[:] = bytes(PGSIZE)
        page.flags.fetch_or(PG_UPTODATE)

    def writepage(self, pm: PageMap, page: Page) -> None:
        pass


@dataclass
class World:
    """Machine `m` (every call is made on it), `other`, and `shut`, closed."""

    tmp: Path
    m: Machine
    other: Machine
    shut: Machine
    f: HostFile  # r+ of m, two pages
    ro: HostFile  # "r" of m
    closed_file: HostFile  # of m, closed
    g: HostFile  # of other
    dead_file: HostFile  # of shut
    dev: BlockDevice  # of m, 16 blocks of 512
    dev2: BlockDevice  # of m, another image
    other_dev: BlockDevice
    dead_dev: BlockDevice
    pm: PageMap  # a bare page map of m
    other_pm: PageMap
    dead_pm: PageMap
    p: Proc
    va: int  # two pages of p, mapping f shared
    exited: Proc
    dead_proc: Proc
    held: list[tuple[PageMap, Page]]  # references the rows use; given back after

    def foreign_page(self) -> Page:
        return self._hold(self.other_pm, self.other_pm.load_page(0))

    def file_page(self) -> Page:
        return self._hold(self.f.mapping, self.f.mapping.load_page(0))

    def foreign_buffer(self) -> BufferHead:
        bh = self.other_dev.get_buffer(0, 512)
        self._hold(self.other_dev.mapping, bh.page)
        return bh

    def buffer_of_dev2(self) -> BufferHead:
        bh = self.dev2.get_buffer(0, 512)
        self._hold(self.dev2.mapping, bh.page)
        return bh

    def _hold(self, pm: PageMap, page: Page) -> Page:
        self.held.append((pm, page))
        return page

    def release(self) -> None:
        for pm, page in self.held:
            pm.put_page(page)
        self.held.clear()


def make_world(tmp: Path) -> World:
    for name, data in (("f", b"f" * 2 * PGSIZE), ("g", b"g" * PGSIZE), ("d", b"d" * 100)):
        (tmp / name).write_bytes(data)
    for name in ("img", "img2", "img3", "img4"):
        (tmp / name).write_bytes(bytes(range(256)) * 32)  # 16 sectors of 512
    m, other, shut = (
        Machine(cores=1, memory=(FRAMES + 1) * PGSIZE, executor="sim", seed=0) for _ in range(3)
    )
    f = m.open(tmp / "f", "r+")
    closed_file = m.open(tmp / "f", "r+")
    closed_file.close()
    p = m.process()
    va = p.mmap(2 * PGSIZE, RW, MAP_SHARED, f)
    assert p.load(va, 4) == b"ffff" and f.pread(4, PGSIZE) == b"ffff"
    exited = m.process()
    exited.exit()
    dead_file = shut.open(tmp / "d", "r+")
    dead_dev = shut.blockdev(tmp / "img4")
    dead_pm = shut.page_map(CountingOps())
    dead_proc = shut.process()
    shut.close()
    return World(
        tmp=tmp,
        m=m,
        other=other,
        shut=shut,
        f=f,
        ro=m.open(tmp / "f", "r"),
        closed_file=closed_file,
        g=other.open(tmp / "g", "r+"),
        dead_file=dead_file,
        dev=m.blockdev(tmp / "img"),
        dev2=m.blockdev(tmp / "img2"),
        other_dev=other.blockdev(tmp / "img3"),
        dead_dev=dead_dev,
        pm=m.page_map(ZeroOps()),
        other_pm=other.page_map(CountingOps()),
        dead_pm=dead_pm,
        p=p,
        va=va,
        exited=exited,
        dead_proc=dead_proc,
        held=[],
    )


def host_files(tmp: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(tmp.iterdir()) if p.is_file()}


def accounting(m: Machine) -> list[str]:
    """check_quiescent, and every used frame cached or a process's own."""
    problems = m.check_quiescent()
    owned = sum(pm.nr_pages for pm in m.page_maps) + sum(len(p.anon) for p in m.procs)
    if m.allocator.nr_used != owned:
        problems.append(f"{m.allocator.nr_used} frames used, {owned} accounted for")
    return problems


def good_trace() -> dict[str, Any]:
    return {
        "schema": 2,
        "pagemap": "0.1.0",
        "model": {"scenario": "write-remove"},
        "params": {"pages": 1, "rounds": 2, "readers": 1},
        "cores": 3,
        "memory": 6 * PGSIZE,
        "max_steps": 20000,
        "strategy": "dpor",
        "seed": 0,
        "schedule_index": 2,
        "preemption_bound": None,
        "schedule": "0*14.1*8",
        "steps": 47,
        "preemptions": 2,
        "oracle": "accounting",
        "message": "a page was freed while in use",
    }


def trace_with(**change: Any) -> Callable[[World], object]:
    return lambda w: Trace.from_dict(good_trace() | change)


def trace_file(text: str | bytes) -> Callable[[World], object]:
    def load(w: World) -> Trace:
        path = w.tmp / "trace.json"
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        try:
            return Trace.load(path)
        finally:
            path.unlink()

    return load


def raises_kernel_error(args: tuple[object, ...], **kw: Any) -> Callable[[World], object]:
    return lambda w: KernelError(*args, **kw)  # type: ignore[call-overload]


def equal(got: object, want: object) -> None:
    assert got == want, f"{got!r}, not {want!r}"


Call = Callable[[World], object]
Row = tuple[str, Call, type[BaseException] | None, int | None]
OK = None

MACHINE: list[Row] = [
    ("cores not an int", lambda w: Machine(cores="2"), TypeError, None),  # type: ignore[arg-type]
    ("cores 0", lambda w: Machine(cores=0, memory=8192), ValueError, None),
    ("cores 1, the least", lambda w: Machine(cores=1, memory=8192), OK, None),
    ("cores at the most", lambda w: Machine(cores=MAX_CORES, memory=8192), OK, None),
    ("cores past the most", lambda w: Machine(cores=MAX_CORES + 1, memory=8192), ValueError, None),
    ("memory None", lambda w: Machine(memory=None), TypeError, None),  # type: ignore[arg-type]
    ("memory a float", lambda w: Machine(memory=8192.0), TypeError, None),  # type: ignore[arg-type]
    ("memory unreadable", lambda w: Machine(memory="lots"), ValueError, None),
    ("memory negative", lambda w: Machine(memory=-PGSIZE), ValueError, None),
    ("memory not whole pages", lambda w: Machine(memory=3 * PGSIZE + 1), ValueError, None),
    ("memory one frame", lambda w: Machine(memory=PGSIZE), ValueError, None),
    ("memory two frames, the least", lambda w: Machine(memory=2 * PGSIZE), OK, None),
    ("memory past the host", lambda w: Machine(memory="1000000GiB"), OutOfMemory, errno.ENOMEM),
    ("executor None", lambda w: Machine(executor=None), TypeError, None),  # type: ignore[arg-type]
    ("executor unknown", lambda w: Machine(memory=8192, executor="gpu"), ValueError, None),
    ("seed a str", lambda w: Machine(memory=8192, seed="x"), TypeError, None),  # type: ignore[arg-type]
    ("max_steps 0", lambda w: Machine(memory=8192, executor="sim", max_steps=0), ValueError, None),
    ("max_steps 1", lambda w: Machine(memory=8192, executor="sim", max_steps=1), OK, None),
    ("open: mode None", lambda w: w.m.open(w.tmp / "f", None), TypeError, None),  # type: ignore[arg-type]
    ("open: path None", lambda w: w.m.open(None), TypeError, None),  # type: ignore[arg-type]
    ("open: mode rw", lambda w: w.m.open(w.tmp / "f", "rw"), InvalidArgument, errno.EINVAL),
    ("open: missing", lambda w: w.m.open(w.tmp / "nope", "r"), KernelError, errno.ENOENT),
    ("open: a directory", lambda w: w.m.open(w.tmp, "r"), KernelError, errno.EISDIR),
    ("blockdev: sector 256", lambda w: w.m.blockdev(w.tmp / "img", 256), InvalidArgument, 22),
    ("blockdev: sector 8192", lambda w: w.m.blockdev(w.tmp / "img", 8192), InvalidArgument, 22),
    ("blockdev: sector a str", lambda w: w.m.blockdev(w.tmp / "img", "512"), TypeError, None),  # type: ignore[arg-type]
    ("blockdev: sector 4096, the most", lambda w: w.m.blockdev(w.tmp / "img4", 4096), OK, None),
    ("page_map: no ops", lambda w: w.m.page_map(object()), TypeError, None),  # type: ignore[arg-type]
    ("page_map: name an int", lambda w: w.m.page_map(CountingOps(), name=5), TypeError, None),  # type: ignore[arg-type]
    ("spawn: not callable", lambda w: w.m.spawn(5), TypeError, None),  # type: ignore[arg-type]
    ("spawn: no such core", lambda w: w.m.spawn(print, core=1), ValueError, None),
    ("spawn: core a str", lambda w: w.m.spawn(print, core="0"), TypeError, None),  # type: ignore[arg-type]
    ("start_flusher: period 0", lambda w: w.m.start_flusher(0), ValueError, None),
    ("start_flusher: period NaN", lambda w: w.m.start_flusher(float("nan")), ValueError, None),
    ("start_flusher: period a str", lambda w: w.m.start_flusher("1"), TypeError, None),  # type: ignore[arg-type]
    ("closed: open", lambda w: w.shut.open(w.tmp / "f"), AlreadyClosed, errno.EBADF),
    ("closed: process", lambda w: w.shut.process(), AlreadyClosed, errno.EBADF),
    ("closed: page_map", lambda w: w.shut.page_map(CountingOps()), AlreadyClosed, errno.EBADF),
    ("closed: blockdev", lambda w: w.shut.blockdev(w.tmp / "img"), AlreadyClosed, errno.EBADF),
    ("closed: spawn", lambda w: w.shut.spawn(print), AlreadyClosed, errno.EBADF),
    ("closed: start_flusher", lambda w: w.shut.start_flusher(), AlreadyClosed, errno.EBADF),
    ("closed: run", lambda w: w.shut.run(), AlreadyClosed, errno.EBADF),
    ("closed: sync", lambda w: w.shut.sync(), AlreadyClosed, errno.EBADF),
    ("closed: with", lambda w: w.shut.__enter__(), AlreadyClosed, errno.EBADF),
    ("closed: close again", lambda w: w.shut.close(), OK, None),
]

FILE: list[Row] = [
    *[(f"pread: count {v!r}", lambda w, v=v: w.f.pread(v, 0), TypeError, None) for v in NOT_INT],
    *[(f"pread: offset {v!r}", lambda w, v=v: w.f.pread(1, v), TypeError, None) for v in NOT_INT],
    ("pread: count -1", lambda w: w.f.pread(-1, 0), InvalidArgument, errno.EINVAL),
    ("pread: offset -1", lambda w: w.f.pread(1, -1), InvalidArgument, errno.EINVAL),
    ("pread: count 0", lambda w: w.f.pread(0, 0), OK, None),
    ("pread: count 2**43", lambda w: w.f.pread(1 << 43, 2 * PGSIZE - 1), OK, None),
    ("pread: offset 2**70", lambda w: w.f.pread(1, 1 << 70), OK, None),
    ("pwrite: a str", lambda w: w.f.pwrite("abc", 0), TypeError, None),  # type: ignore[arg-type]
    ("pwrite: an int", lambda w: w.f.pwrite(5, 0), TypeError, None),  # type: ignore[arg-type]
    ("pwrite: a list", lambda w: w.f.pwrite([1, 2], 0), TypeError, None),  # type: ignore[arg-type]
    *[
        (f"pwrite: offset {v!r}", lambda w, v=v: w.f.pwrite(b"x", v), TypeError, None)
        for v in NOT_INT
    ],
    ("pwrite: offset -1", lambda w: w.f.pwrite(b"x", -1), InvalidArgument, errno.EINVAL),
    (
        "pwrite: at the largest size",
        lambda w: w.f.pwrite(b"x", w.f.inode.largest_size()),
        FileTooLarge,
        errno.EFBIG,
    ),
    (
        "pwrite: the last byte allowed",
        lambda w: equal(w.f.pwrite(b"x", w.f.inode.largest_size() - 1), 1),
        OK,
        None,
    ),
    (
        "pwrite: across the largest size",
        lambda w: equal(w.f.pwrite(b"xy", w.f.inode.largest_size() - 1), 1),
        OK,
        None,
    ),
    ("pwrite: 2**63", lambda w: w.f.pwrite(b"x", 1 << 63), FileTooLarge, errno.EFBIG),
    ("pwrite: nothing, past it", lambda w: w.f.pwrite(b"", 1 << 63), OK, None),
    ("truncate: -1", lambda w: w.f.truncate(-1), InvalidArgument, errno.EINVAL),
    (
        "truncate: past the largest",
        lambda w: w.f.truncate(w.f.inode.largest_size() + 1),
        FileTooLarge,
        errno.EFBIG,
    ),
    *[(f"truncate: {v!r}", lambda w, v=v: w.f.truncate(v), TypeError, None) for v in NOT_INT],
    ("read-only: pwrite", lambda w: w.ro.pwrite(b"x", 0), KernelError, errno.EBADF),
    ("read-only: truncate", lambda w: w.ro.truncate(0), KernelError, errno.EBADF),
    ("closed file: pread", lambda w: w.closed_file.pread(1, 0), AlreadyClosed, errno.EBADF),
    ("closed file: pwrite", lambda w: w.closed_file.pwrite(b"x", 0), AlreadyClosed, errno.EBADF),
    ("closed file: truncate", lambda w: w.closed_file.truncate(0), AlreadyClosed, errno.EBADF),
    ("closed file: fsync", lambda w: w.closed_file.fsync(), AlreadyClosed, errno.EBADF),
    ("closed machine: pread", lambda w: w.dead_file.pread(1, 0), AlreadyClosed, errno.EBADF),
    ("closed machine: pwrite", lambda w: w.dead_file.pwrite(b"x", 0), AlreadyClosed, errno.EBADF),
    ("closed machine: truncate", lambda w: w.dead_file.truncate(0), AlreadyClosed, errno.EBADF),
    ("closed machine: fsync", lambda w: w.dead_file.fsync(), AlreadyClosed, errno.EBADF),
    ("closed machine: close", lambda w: w.dead_file.close(), OK, None),
    ("faults: unknown kind", lambda w: w.f.faults.fail("erase"), ValueError, None),
    ("faults: kind an int", lambda w: w.f.faults.fail(5), TypeError, None),  # type: ignore[arg-type]
    ("faults: count -1", lambda w: w.f.faults.fail("read", -1), ValueError, None),
    ("faults: count a str", lambda w: w.f.faults.fail("read", "1"), TypeError, None),  # type: ignore[arg-type]
    ("faults: count 0", lambda w: w.f.faults.fail("read", 0), OK, None),
    ("faults: pending bogus", lambda w: w.f.faults.pending("bogus"), ValueError, None),
    ("faults: pending None", lambda w: w.f.faults.pending(None), TypeError, None),  # type: ignore[arg-type]
]

PAGE_MAP: list[Row] = [
    ("load_page: -1", lambda w: w.pm.load_page(-1), InvalidArgument, errno.EINVAL),
    (
        "load_page: past the tree",
        lambda w: w.pm.load_page(RADIX_MAX_INDEX + 1),
        InvalidArgument,
        22,
    ),
    (
        "load_page: the last index",
        lambda w: w.pm.put_page(w.pm.load_page(RADIX_MAX_INDEX)),
        OK,
        None,
    ),
    *[(f"load_page: {v!r}", lambda w, v=v: w.pm.load_page(v), TypeError, None) for v in NOT_INT],
    *[(f"find_page: {v!r}", lambda w, v=v: w.pm.find_page(v), TypeError, None) for v in NOT_INT],
    ("find_page: -1", lambda w: w.pm.find_page(-1), InvalidArgument, errno.EINVAL),
    ("lookup: -1", lambda w: w.pm.lookup(-1), InvalidArgument, errno.EINVAL),
    ("put_page: None", lambda w: w.pm.put_page(None), TypeError, None),  # type: ignore[arg-type]
    ("put_page: a buffer head", lambda w: w.pm.put_page(w.foreign_buffer()), TypeError, None),  # type: ignore[arg-type]
    ("put_page: another machine's", lambda w: w.pm.put_page(w.foreign_page()), WrongMachine, 22),
    ("put_page: another map's", lambda w: w.pm.put_page(w.file_page()), InvalidArgument, 22),
    (
        "put_page: a free frame",
        lambda w: w.pm.put_page(w.m.allocator.pages[FRAMES]),
        KernelBug,
        errno.EFAULT,
    ),
    ("remove_contig: -1", lambda w: w.pm.remove_contig(-1, 1), InvalidArgument, errno.EINVAL),
    ("remove_contig: a str", lambda w: w.pm.remove_contig("0", 1), TypeError, None),  # type: ignore[arg-type]
    ("remove_contig: 2**70", lambda w: w.pm.remove_contig(1 << 70, 1 << 70), OK, None),
    ("writeback: count -1", lambda w: w.pm.writeback(0, -1), InvalidArgument, errno.EINVAL),
    ("writeback: count None", lambda w: w.pm.writeback(0, None), TypeError, None),  # type: ignore[arg-type]
    ("closed machine: load_page", lambda w: w.dead_pm.load_page(0), AlreadyClosed, errno.EBADF),
    ("closed machine: file page", lambda w: w.dead_file.mapping.load_page(0), AlreadyClosed, 9),
    ("closed machine: find_page", lambda w: w.dead_pm.find_page(0), OK, None),
]

BLOCK_DEVICE: list[Row] = [
    ("get_buffer: -1", lambda w: w.dev.get_buffer(-1, 512), InvalidArgument, errno.EINVAL),
    ("get_buffer: past the end", lambda w: w.dev.get_buffer(16, 512), InvalidArgument, 22),
    ("get_buffer: the last", lambda w: w.dev.put_buffer(w.dev.get_buffer(15, 512)), OK, None),
    ("get_buffer: size 256", lambda w: w.dev.get_buffer(0, 256), InvalidArgument, errno.EINVAL),
    ("get_buffer: size 8192", lambda w: w.dev.get_buffer(0, 8192), InvalidArgument, 22),
    ("get_buffer: size 768", lambda w: w.dev.get_buffer(0, 768), InvalidArgument, errno.EINVAL),
    ("get_buffer: a str", lambda w: w.dev.get_buffer("0", 512), TypeError, None),  # type: ignore[arg-type]
    ("get_buffer: size None", lambda w: w.dev.get_buffer(0, None), TypeError, None),  # type: ignore[arg-type]
    ("put_buffer: None", lambda w: w.dev.put_buffer(None), TypeError, None),  # type: ignore[arg-type]
    ("dirty_buffer: None", lambda w: w.dev.dirty_buffer(None), TypeError, None),  # type: ignore[arg-type]
    ("put_buffer: a page", lambda w: w.dev.put_buffer(w.file_page()), TypeError, None),  # type: ignore[arg-type]
    (
        "put_buffer: another machine's",
        lambda w: w.dev.put_buffer(w.foreign_buffer()),
        WrongMachine,
        22,
    ),
    (
        "dirty_buffer: another machine's",
        lambda w: w.dev.dirty_buffer(w.foreign_buffer()),
        WrongMachine,
        22,
    ),
    (
        "put_buffer: another device's",
        lambda w: w.dev.put_buffer(w.buffer_of_dev2()),
        InvalidArgument,
        22,
    ),
    ("closed machine: get_buffer", lambda w: w.dead_dev.get_buffer(0, 512), AlreadyClosed, 9),
    ("closed machine: sync", lambda w: w.dead_dev.sync(), AlreadyClosed, errno.EBADF),
]

FILE_ARG: list[tuple[str, Callable[[World], object]]] = [
    ("a str", lambda w: str(w.tmp / "f")),
    ("an int", lambda w: 3),
    ("a BlockDevice", lambda w: w.dev),
    ("a PageMap", lambda w: w.f.mapping),
]

PROC: list[Row] = [
    (
        "mmap: another machine's file",
        lambda w: w.p.mmap(PGSIZE, RW, MAP_SHARED, w.g),
        WrongMachine,
        22,
    ),
    (
        "mmap: a closed file",
        lambda w: w.p.mmap(PGSIZE, RW, MAP_SHARED, w.closed_file),
        AlreadyClosed,
        9,
    ),
    (
        "mmap: a closed machine's file",
        lambda w: w.p.mmap(PGSIZE, RW, MAP_SHARED, w.dead_file),
        AlreadyClosed,
        9,
    ),
    *[
        (
            f"mmap: file {what}",
            lambda w, a=arg: w.p.mmap(PGSIZE, RW, MAP_SHARED, a(w)),
            TypeError,
            None,
        )
        for what, arg in FILE_ARG
    ],
    ("mmap: length a str", lambda w: w.p.mmap("4096", RW, MAP_SHARED, w.f), TypeError, None),  # type: ignore[arg-type]
    ("mmap: offset a float", lambda w: w.p.mmap(PGSIZE, RW, MAP_SHARED, w.f, 0.0), TypeError, None),  # type: ignore[arg-type]
    ("mmap: flags None", lambda w: w.p.mmap(PGSIZE, RW, None, w.f), TypeError, None),  # type: ignore[arg-type]
    ("mmap: length 0", lambda w: w.p.mmap(0, RW, MAP_SHARED, w.f), InvalidArgument, errno.EINVAL),
    (
        "mmap: length past user space",
        lambda w: w.p.mmap(USER_TOP + 1, RW, MAP_PRIVATE | MAP_ANONYMOUS),
        NotMapped,
        errno.ENOMEM,
    ),
    (
        "mmap: offset unaligned",
        lambda w: w.p.mmap(PGSIZE, RW, MAP_SHARED, w.f, 1),
        InvalidArgument,
        22,
    ),
    (
        "mmap: anonymous ignores the file",
        lambda w: w.p.munmap(w.p.mmap(PGSIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS, w.g), PGSIZE),
        OK,
        None,
    ),
    ("load: -1 bytes", lambda w: w.p.load(w.va, -1), InvalidArgument, errno.EINVAL),
    ("load: count a str", lambda w: w.p.load(w.va, "1"), TypeError, None),  # type: ignore[arg-type]
    ("load: address a float", lambda w: w.p.load(float(w.va), 1), TypeError, None),  # type: ignore[arg-type]
    ("load: past user space", lambda w: w.p.load(USER_TOP, 1), SegmentationFault, errno.EFAULT),
    ("load: the last mapped byte", lambda w: w.p.load(w.va + 2 * PGSIZE - 1, 1), OK, None),
    ("load: one byte past it", lambda w: w.p.load(w.va + 2 * PGSIZE, 1), SegmentationFault, 14),
    ("store: an int", lambda w: w.p.store(w.va, 5), TypeError, None),  # type: ignore[arg-type]
    ("store: a list", lambda w: w.p.store(w.va, [1, 2, 3]), TypeError, None),  # type: ignore[arg-type]
    ("store: a str", lambda w: w.p.store(w.va, "abc"), TypeError, None),  # type: ignore[arg-type]
    ("store: address None", lambda w: w.p.store(None, b"x"), TypeError, None),  # type: ignore[arg-type]
    (
        "store: past user space",
        lambda w: w.p.store(USER_TOP, b"x"),
        SegmentationFault,
        errno.EFAULT,
    ),
    ("store: nothing", lambda w: w.p.store(w.va, b""), OK, None),
    ("munmap: length a str", lambda w: w.p.munmap(w.va, "1"), TypeError, None),  # type: ignore[arg-type]
    ("munmap: unaligned", lambda w: w.p.munmap(w.va + 1, PGSIZE), InvalidArgument, errno.EINVAL),
    ("munmap: length 0", lambda w: w.p.munmap(w.va, 0), InvalidArgument, errno.EINVAL),
    ("mprotect: prot a str", lambda w: w.p.mprotect(w.va, PGSIZE, "1"), TypeError, None),  # type: ignore[arg-type]
    ("mprotect: unknown bits", lambda w: w.p.mprotect(w.va, PGSIZE, 0x100), InvalidArgument, 22),
    ("msync: length -1", lambda w: w.p.msync(w.va, -1), InvalidArgument, errno.EINVAL),
    ("msync: address None", lambda w: w.p.msync(None, 1), TypeError, None),  # type: ignore[arg-type]
    ("exited: load", lambda w: w.exited.load(w.va, 1), NoSuchProcess, errno.ESRCH),
    ("exited: store", lambda w: w.exited.store(w.va, b"x"), NoSuchProcess, errno.ESRCH),
    ("exited: mmap", lambda w: w.exited.mmap(PGSIZE, RW, MAP_SHARED, w.f), NoSuchProcess, 3),
    ("exited: munmap", lambda w: w.exited.munmap(w.va, PGSIZE), NoSuchProcess, errno.ESRCH),
    ("exited: mprotect", lambda w: w.exited.mprotect(w.va, PGSIZE, RW), NoSuchProcess, 3),
    ("exited: msync", lambda w: w.exited.msync(w.va, PGSIZE), NoSuchProcess, errno.ESRCH),
    ("exited: exit again", lambda w: w.exited.exit(), OK, None),
    (
        "closed machine: mmap",
        lambda w: w.dead_proc.mmap(PGSIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS),
        NoSuchProcess,
        3,
    ),
]

ERRORS: list[Row] = [
    ("KernelError(message, errno)", raises_kernel_error(("disk gone", errno.EIO)), TypeError, None),
    ("KernelError(errno, errno)", raises_kernel_error((errno.EIO, 5)), TypeError, None),
    ("KernelError(errno=str)", raises_kernel_error(("x",), errno="5"), TypeError, None),
    ("KernelError()", raises_kernel_error(()), TypeError, None),
]

TRACE: list[Row] = [
    ("trace: a field it has not", trace_with(original=5), TraceError, None),
    ("trace: seed a list", trace_with(seed=[1]), TraceError, None),
    ("trace: steps a list", trace_with(steps=[1]), TraceError, None),
    ("trace: seed -1", trace_with(seed=-1), TraceError, None),
    ("trace: cores 0", trace_with(cores=0), TraceError, None),
    ("trace: cores 64, the most", trace_with(cores=64), OK, None),
    ("trace: cores 65", trace_with(cores=65), TraceError, None),
    ("trace: cores 3.0", trace_with(cores=3.0), TraceError, None),
    ("trace: memory 8191", trace_with(memory=8191), TraceError, None),
    ("trace: memory 8192, the least", trace_with(memory=8192), OK, None),
    ("trace: memory past 1 GiB", trace_with(memory=(1 << 30) + 1), TraceError, None),
    ("trace: max_steps 0", trace_with(max_steps=0), TraceError, None),
    ("trace: max_steps 10**8, the most", trace_with(max_steps=10**8), OK, None),
    ("trace: max_steps past 10**8", trace_with(max_steps=10**8 + 1), TraceError, None),
    ("trace: a parameter of 10**6", trace_with(params={"pages": 10**6}), OK, None),
    ("trace: a parameter past 10**6", trace_with(params={"pages": 10**6 + 1}), TraceError, None),
    ("trace: a parameter of 10**30", trace_with(params={"loaders": 10**30}), TraceError, None),
    ("trace: a parameter a float", trace_with(params={"pages": 1.5}), TraceError, None),
    ("trace: 33 parameters", trace_with(params={f"p{i}": 1 for i in range(33)}), TraceError, None),
    ("trace: not JSON", trace_file("{"), TraceError, None),
    ("trace: not UTF-8", trace_file(b"\xff\xfe"), TraceError, None),
    (
        "trace: NaN",
        trace_file(json.dumps(good_trace()).replace('"seed": 0', '"seed": NaN')),
        TraceError,
        None,
    ),
    ("trace: nested too deep", trace_file("[" * 100_000 + "]" * 100_000), TraceError, None),
    ("trace: too large", trace_file(b" " * (MAX_TRACE_BYTES + 1)), TraceError, None),
    ("trace: a good one", trace_file(json.dumps(good_trace())), OK, None),
]

ROWS = MACHINE + FILE + PAGE_MAP + BLOCK_DEVICE + PROC + ERRORS + TRACE


@pytest.mark.parametrize("name, call, exc, code", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input(
    tmp_path: Path, name: str, call: Call, exc: type[BaseException] | None, code: int | None
) -> None:
    w = make_world(tmp_path)
    before = host_files(tmp_path)
    if exc is None:
        call(w)
    else:
        with pytest.raises(exc) as info:
            call(w)
        err = info.value
        assert type(err) is exc, f"{name}: {type(err).__name__} {err}"
        assert getattr(err, "errno", None) == code, f"{name}: {err}"
        assert str(err) and " " in str(err)  # a sentence, not a bare code
    assert host_files(tmp_path) == before
    w.release()
    for m in (w.m, w.other, w.shut):
        assert accounting(m) == []
    # The world still works: what the rows refused left it whole.
    assert w.p.load(w.va + PGSIZE, 4) == w.f.pread(4, PGSIZE) == b"ffff"


def test_every_public_call_has_a_row() -> None:
    """Each call of the API's objects appears in some row's name."""
    names = " ".join(r[0] for r in ROWS)
    calls = {
        Machine: ["open", "blockdev", "page_map", "spawn", "start_flusher", "run", "sync"],
        HostFile: ["pread", "pwrite", "truncate", "fsync", "close"],
        PageMap: ["load_page", "find_page", "lookup", "put_page", "remove_contig", "writeback"],
        BlockDevice: ["get_buffer", "put_buffer", "dirty_buffer", "sync"],
        Proc: ["mmap", "munmap", "mprotect", "msync", "load", "store", "exit"],
    }
    for cls, methods in calls.items():
        for method in methods:
            assert callable(getattr(cls, method)), (cls, method)
            assert method in names, f"no row for {cls.__name__}.{method}"
