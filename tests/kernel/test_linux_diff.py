"""Differential test: the same mmap/store/load/pread/pwrite/munmap/mprotect/
msync/fsync/truncate/fallocate sequences on Linux and on a Machine.

Hypothesis generates the sequences.  On the Linux side they run in this very
process, through libc (ctypes) on a temporary file; on the other they run
on a Machine over a copy of that file.  Every load and read, every error
number, and the final file bytes must agree.

All mappings are made with MAP_FIXED inside one region far below where Linux
places anything on its own, so a hole we unmap is never taken by another
mapping of this process, and nothing outside the region is ever touched.
An access that Linux would answer with a signal is not made on the Linux
side (it would kill the test): Linux is asked instead, through
/proc/self/maps and the file's size, what it would do (SIGSEGV or SIGBUS),
and the Machine must raise the matching error.

fallocate (hole punching, allocation) is asked of Linux through libc's
fallocate and os.posix_fallocate on the test's temporary directory, whose
filesystem must punch holes (ext4, xfs, btrfs and tmpfs do); the Machine's
host file sits in the same directory, so its own punches reach the host too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pagemap import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_LOCKED,
    MAP_PRIVATE,
    MAP_SHARED,
    PGSIZE,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    BusError,
    KernelError,
    Machine,
    SegmentationFault,
)
from pagemap.kernel.fallocate import FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, PUNCH
from pagemap.kernel.hostfs import HostFile
from pagemap.kernel.mkwrite import DIRTY_TRACKING

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux is the judge")

REGION = 0x1000_0000_0000  # far below Linux's own mmap area, inside ours
REGION_PAGES = 12
FILE_PAGES = 6
MS_SYNC = 4
WORD = 1 << 64  # lengths are size_t: an end at or past this wraps
MAP_FAILED = WORD - 1
RW = PROT_READ | PROT_WRITE
PROTS = (RW, PROT_READ, PROT_NONE)  # no PROT_WRITE alone: x86 reads it, /proc/self/maps says "-w-"

SIGSEGV, SIGBUS, OK = "SIGSEGV", "SIGBUS", "ok"

# `make test` runs the same 300 examples every time; set PAGEMAP_DIFF_EXAMPLES
# to run more, freshly drawn, for a longer search.
EXAMPLES_FROM_ENV = os.environ.get("PAGEMAP_DIFF_EXAMPLES")
EXAMPLES = int(EXAMPLES_FROM_ENV or 300)


# -- the Linux side -----------------------------------------------------------------


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    for name in ("munmap", "mprotect", "msync"):
        fn = getattr(libc, name)
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t] + (
            [ctypes.c_int] if name != "munmap" else []
        )
    libc.fallocate.restype = ctypes.c_int
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    return libc


LIBC = _libc() if sys.platform.startswith("linux") else None


def _errno_of(ret: int | None, failed: int) -> int:
    return ctypes.get_errno() if ret == failed else 0


@dataclass
class Vma:
    start: int
    end: int
    perms: str
    offset: int
    path: str


def linux_vma(addr: int) -> Vma | None:
    """The mapping Linux has at `addr`, from /proc/self/maps."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            if lo <= addr < hi:
                return Vma(lo, hi, fields[1], int(fields[2], 16), " ".join(fields[5:]))
    return None


class Linux:
    """The real kernel, over `path`."""

    def __init__(self, path: Path) -> None:
        assert LIBC is not None
        self.libc = LIBC
        self.path = str(path.resolve())
        self.fd = os.open(path, os.O_RDWR)
        self.ro_fd = os.open(path, os.O_RDONLY)

    def close(self) -> None:
        self.libc.munmap(REGION, REGION_PAGES * PGSIZE)
        os.close(self.fd)
        os.close(self.ro_fd)

    def mmap(self, addr: int, length: int, prot: int, flags: int, ro: bool, off: int) -> int:
        # The fd even with MAP_ANONYMOUS, which Linux ignores (as the Machine
        # ignores the file).
        fd = self.ro_fd if ro else self.fd
        ctypes.set_errno(0)
        ret = self.libc.mmap(addr, length, prot, flags | MAP_FIXED, fd, off)
        return _errno_of(ret, MAP_FAILED)

    def munmap(self, addr: int, length: int) -> int:
        ctypes.set_errno(0)
        return _errno_of(self.libc.munmap(addr, length), -1)

    def mprotect(self, addr: int, length: int, prot: int) -> int:
        ctypes.set_errno(0)
        return _errno_of(self.libc.mprotect(addr, length, prot), -1)

    def msync(self, addr: int, length: int) -> int:
        ctypes.set_errno(0)
        return _errno_of(self.libc.msync(addr, length, MS_SYNC), -1)

    def would(self, addr: int, write: bool) -> str:
        """What Linux does on this access: OK, SIGSEGV or SIGBUS."""
        vma = linux_vma(addr)
        if vma is None or not REGION <= addr < REGION + REGION_PAGES * PGSIZE:
            return SIGSEGV
        if "w" not in vma.perms if write else "r" not in vma.perms:
            return SIGSEGV
        if vma.path == self.path:  # not "/dev/zero (deleted)", the shmem under MAP_SHARED anon
            page = (vma.offset + addr - vma.start) // PGSIZE
            size = os.fstat(self.fd).st_size
            if page >= (size + PGSIZE - 1) // PGSIZE:
                return SIGBUS
        return OK

    def load(self, addr: int, n: int) -> bytes | str:
        verdict = self.would(addr, False)
        return ctypes.string_at(addr, n) if verdict == OK else verdict

    def store(self, addr: int, data: bytes) -> str:
        verdict = self.would(addr, True)
        if verdict == OK:
            ctypes.memmove(addr, data, len(data))
        return verdict

    def pread(self, n: int, off: int) -> bytes:
        return os.pread(self.fd, n, off)

    def pwrite(self, data: bytes, off: int) -> int:
        return os.pwrite(self.fd, data, off)

    def truncate(self, size: int) -> None:
        os.ftruncate(self.fd, size)

    def fsync(self) -> None:
        os.fsync(self.fd)

    def fallocate(self, mode: int, off: int, n: int) -> int:
        if not mode:
            try:
                os.posix_fallocate(self.fd, off, n)
            except OSError as exc:
                return exc.errno or -1
            return 0
        ctypes.set_errno(0)
        return _errno_of(self.libc.fallocate(self.fd, mode, off, n), -1)


# -- the Machine side -------------------------------------------------------------------


class Ours:
    """A Machine over a copy of the file."""

    def __init__(self, path: Path, mode: str = "wp") -> None:
        self.m = Machine(
            cores=2, memory=(48 + 1) * PGSIZE, executor="sim", seed=0, dirty_tracking=mode
        )
        self.file: HostFile = self.m.open(path, "r+")
        self.ro: HostFile = self.m.open(path, "r")
        self.proc = self.m.process()

    def close(self) -> None:
        self.proc.exit()
        self.file.fsync()

    def mapped_pages(self) -> list[int]:
        """Region pages with a mapping (not the judge: only to aim accesses)."""
        return [
            pg
            for v in self.proc.vmrs
            for pg in range((v.base - REGION) // PGSIZE, (v.end - REGION) // PGSIZE)
        ]

    @staticmethod
    @contextmanager
    def errno_of(box: list[int]) -> Iterator[None]:
        try:
            yield
            box.append(0)
        except KernelError as exc:
            box.append(exc.errno or -1)

    def mmap(self, addr: int, length: int, prot: int, flags: int, ro: bool, off: int) -> int:
        box: list[int] = []
        with self.errno_of(box):
            f = None if flags & MAP_ANONYMOUS else (self.ro if ro else self.file)
            self.proc.mmap(length, prot, flags | MAP_FIXED, f, off, addr)
        return box[0]

    def munmap(self, addr: int, length: int) -> int:
        box: list[int] = []
        with self.errno_of(box):
            self.proc.munmap(addr, length)
        return box[0]

    def mprotect(self, addr: int, length: int, prot: int) -> int:
        box: list[int] = []
        with self.errno_of(box):
            self.proc.mprotect(addr, length, prot)
        return box[0]

    def msync(self, addr: int, length: int) -> int:
        box: list[int] = []
        with self.errno_of(box):
            self.proc.msync(addr, length)
        return box[0]

    def load(self, addr: int, n: int) -> bytes | str:
        try:
            return self.proc.load(addr, n)
        except SegmentationFault:
            return SIGSEGV
        except BusError:
            return SIGBUS

    def store(self, addr: int, data: bytes) -> str:
        try:
            self.proc.store(addr, data)
            return OK
        except SegmentationFault:
            return SIGSEGV
        except BusError:
            return SIGBUS

    def pread(self, n: int, off: int) -> bytes:
        return self.file.pread(n, off)

    def pwrite(self, data: bytes, off: int) -> int:
        return self.file.pwrite(data, off)

    def truncate(self, size: int) -> None:
        self.file.truncate(size)

    def fsync(self) -> None:
        self.file.fsync()

    def fallocate(self, mode: int, off: int, n: int) -> int:
        box: list[int] = []
        with self.errno_of(box):
            self.file.fallocate(mode, off, n)
        return box[0]


# -- the operations ------------------------------------------------------------------------

page_no = st.integers(0, REGION_PAGES - 1)
# (first page, number of pages), never past the region's end; rarely empty (hypothesis
# favours the first of a sampled_from)
span = st.tuples(page_no, st.sampled_from((1, 2, 3, 1, 4, 2, 0))).map(
    lambda t: (t[0], min(t[1], REGION_PAGES - t[0]))
)
in_page = st.integers(0, PGSIZE - 16)
file_offset = st.one_of(st.integers(0, (FILE_PAGES + 1) * PGSIZE), st.just(FILE_PAGES * PGSIZE))


@dataclass(frozen=True)
class Op:
    kind: str
    args: tuple[int | bytes | bool, ...]

    def __repr__(self) -> str:
        return f"{self.kind}{self.args!r}"


def addr_of(pg: int) -> int:
    return REGION + pg * PGSIZE


def _mmap(where: tuple[int, int], prot: int, kind: int, anon: bool, ro: bool, foff: int) -> Op:
    return Op("mmap", (*where, prot, kind | (MAP_ANONYMOUS if anon else 0), ro, foff))


mmaps = st.builds(
    _mmap,
    span,
    st.sampled_from((RW, PROT_READ, RW, PROT_NONE)),
    st.sampled_from((MAP_SHARED, MAP_PRIVATE)),
    st.sampled_from((False, False, False, True)),
    st.sampled_from((False, False, False, True)),
    st.sampled_from((0, 0, PGSIZE, 2 * PGSIZE, 5 * PGSIZE, 100)),
)
file_ops = st.one_of(
    st.builds(lambda off, n: Op("pread", (off, n)), file_offset, st.integers(0, 64)),
    st.builds(
        lambda off, data: Op("pwrite", (off, data)), file_offset, st.binary(min_size=1, max_size=32)
    ),
    st.builds(lambda size: Op("truncate", (size,)), file_offset),
    st.just(Op("fsync", ())),
    st.builds(
        lambda mode, off, n: Op("fallocate", (mode, off, n)),
        # Mostly punching; PUNCH_HOLE without KEEP_SIZE is EOPNOTSUPP, a
        # length of 0 EINVAL.  (Not ZERO_RANGE: ext4 has it, our filesystems not.)
        st.sampled_from((PUNCH, PUNCH, PUNCH, FALLOC_FL_KEEP_SIZE, 0, FALLOC_FL_PUNCH_HOLE)),
        file_offset,
        st.sampled_from((PGSIZE, 2 * PGSIZE, 100, PGSIZE + 200, 3 * PGSIZE - 7, 1, 0)),
    ),
)
region_ops = st.one_of(
    st.builds(lambda w: Op("munmap", w), span),
    st.builds(lambda w, prot: Op("mprotect", (*w, prot)), span, st.sampled_from(PROTS)),
    st.builds(lambda w: Op("msync", w), span),
)


def accesses(pages: st.SearchStrategy[int]) -> st.SearchStrategy[Op]:
    return st.one_of(
        st.builds(lambda pg, off, n: Op("load", (pg, off, n)), pages, in_page, st.integers(1, 16)),
        st.builds(
            lambda pg, off, data: Op("store", (pg, off, data)),
            pages,
            in_page,
            st.binary(min_size=1, max_size=16),
        ),
    )


def next_op(mapped: list[int]) -> st.SearchStrategy[Op]:
    """Any operation, but accesses mostly where something is mapped, so that
    they reach pages rather than all ending in SIGSEGV."""
    if not mapped:
        return weighted((mmaps, 3), (file_ops, 1), (accesses(page_no), 1))
    here = accesses(st.sampled_from(mapped))
    return weighted((here, 5), (mmaps, 1), (region_ops, 2), (file_ops, 2), (accesses(page_no), 1))


def weighted(*choices: tuple[st.SearchStrategy[Op], int]) -> st.SearchStrategy[Op]:
    """One of the strategies, in proportion to the weights (st.one_of ignores repeats)."""
    pool = [strategy for strategy, weight in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


def apply(side: Linux | Ours, op: Op) -> object:
    a = op.args
    if op.kind == "mmap":
        pg, n, prot, flags, ro, foff = a
        assert isinstance(pg, int) and isinstance(n, int) and isinstance(foff, int)
        assert isinstance(prot, int) and isinstance(flags, int)
        return side.mmap(addr_of(pg), n * PGSIZE, prot, flags, bool(ro), foff)
    if op.kind in ("munmap", "msync"):
        pg, n = a
        assert isinstance(pg, int) and isinstance(n, int)
        call = side.munmap if op.kind == "munmap" else side.msync
        return call(addr_of(pg), n * PGSIZE)
    if op.kind == "mprotect":
        pg, n, prot = a
        assert isinstance(pg, int) and isinstance(n, int) and isinstance(prot, int)
        return side.mprotect(addr_of(pg), n * PGSIZE, prot)
    if op.kind == "mprotect_bytes":  # a length in bytes, any size_t
        pg, length, prot = a
        assert isinstance(pg, int) and isinstance(length, int) and isinstance(prot, int)
        return side.mprotect(addr_of(pg), length, prot)
    if op.kind == "msync_bytes":
        pg, length = a
        assert isinstance(pg, int) and isinstance(length, int)
        return side.msync(addr_of(pg), length)
    if op.kind == "load":
        pg, off, n = a
        assert isinstance(pg, int) and isinstance(off, int) and isinstance(n, int)
        return side.load(addr_of(pg) + off, n)
    if op.kind == "store":
        pg, off, data = a
        assert isinstance(pg, int) and isinstance(off, int) and isinstance(data, bytes)
        return side.store(addr_of(pg) + off, data)
    if op.kind == "pread":
        off, n = a
        assert isinstance(off, int) and isinstance(n, int)
        return side.pread(n, off)
    if op.kind == "pwrite":
        off, data = a
        assert isinstance(off, int) and isinstance(data, bytes)
        return side.pwrite(data, off)
    if op.kind == "truncate":
        (size,) = a
        assert isinstance(size, int)
        side.truncate(size)
        return None
    if op.kind == "fallocate":
        mode, off, n = a
        assert isinstance(mode, int) and isinstance(off, int) and isinstance(n, int)
        return side.fallocate(mode, off, n)
    side.fsync()
    return None


def reads_after(op: Op, mapped: list[int]) -> list[Op]:
    """After a fallocate, a load through every mapped page at the in-page
    offset where the range began: the punched range, wherever it is mapped,
    read through the mappings (and the rest of the file, elsewhere)."""
    if op.kind != "fallocate":
        return []
    off = op.args[1]
    assert isinstance(off, int)
    at = min(off % PGSIZE, PGSIZE - 16)
    return [Op("load", (pg, at, 16)) for pg in sorted(set(mapped))]


def initial_bytes() -> bytes:
    return b"".join(bytes([0x30 + i]) * PGSIZE for i in range(FILE_PAGES))[:-100]


@pytest.fixture(params=DIRTY_TRACKING)
def mode(request: pytest.FixtureRequest) -> str:
    """Each test runs under both dirty-tracking modes (kernel/mkwrite.py)."""
    mode: str = request.param
    return mode


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if linux_vma(REGION) is not None or linux_vma(REGION + REGION_PAGES * PGSIZE - 1) is not None:
        pytest.skip("the test's address region is taken in this process")
    return tmp_path_factory.mktemp("linux_diff")


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES_FROM_ENV is None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.integers(1, 30), st.data())
def test_a_machine_agrees_with_linux(
    workdir: Path, mode: str, steps: int, data: st.DataObject
) -> None:
    theirs_path, ours_path = workdir / "linux.bin", workdir / "machine.bin"
    theirs_path.write_bytes(initial_bytes())
    ours_path.write_bytes(initial_bytes())
    linux, ours = Linux(theirs_path), Ours(ours_path, mode)
    try:
        for step in range(steps):
            op = data.draw(next_op(ours.mapped_pages()), label=f"step {step}")
            want, got = apply(linux, op), apply(ours, op)
            assert got == want, f"step {step}, {op!r}: Linux gave {want!r}, the Machine {got!r}"
            for check in reads_after(op, ours.mapped_pages()):
                want, got = apply(linux, check), apply(ours, check)
                assert got == want, (
                    f"step {step}, {op!r} then {check!r}: Linux gave {want!r}, the Machine {got!r}"
                )
    finally:
        linux.close()
    ours.close()
    assert ours_path.read_bytes() == theirs_path.read_bytes(), "the files differ at the end"
    assert ours.m.check_quiescent() == []


HAND_PICKED = {
    "unknown prot bits: mmap ignores them, mprotect refuses them": [
        Op("mmap", (0, 2, 0x80 | PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, False, 0)),
        Op("load", (1, 0, 4)),
        Op("mprotect", (0, 1, 0x80 | PROT_READ)),
    ],
    "both MAP_SHARED and MAP_PRIVATE, anonymous": [
        Op("mmap", (0, 1, RW, MAP_SHARED | MAP_PRIVATE | MAP_ANONYMOUS, False, 0)),
    ],
    "mprotect stops at the first region it may not change": [
        Op("mmap", (0, 1, RW, MAP_SHARED, False, 0)),
        Op("mmap", (1, 1, PROT_READ, MAP_SHARED, True, PGSIZE)),
        Op("mmap", (2, 1, PROT_READ, MAP_SHARED, False, 2 * PGSIZE)),
        Op("mprotect", (0, 3, PROT_READ)),
        Op("store", (0, 0, b"x")),
        Op("mprotect", (0, 3, RW)),
        Op("store", (0, 0, b"x")),
        Op("store", (2, 0, b"x")),
    ],
    "mprotect whose end wraps past 2**64 changes nothing; msync's wraps": [
        Op("mmap", (0, 2, RW, MAP_SHARED, False, 0)),
        Op("store", (0, 0, b"x")),
        Op("mprotect_bytes", (0, WORD - addr_of(0), PROT_READ)),
        Op("store", (0, 1, b"x")),
        Op("mprotect_bytes", (0, WORD - 1, PROT_READ)),
        Op("store", (1, 0, b"x")),
        Op("mprotect_bytes", (0, WORD - PGSIZE, PROT_NONE)),
        Op("store", (1, 1, b"x")),
        Op("msync_bytes", (0, WORD - addr_of(0))),
        Op("msync_bytes", (0, WORD - PGSIZE)),
        Op("msync_bytes", (0, WORD - 1)),
        Op("msync_bytes", (0, WORD - PGSIZE + 1)),
        Op("pread", (0, 2)),
        # An end past the top of user space that does not wrap: the region
        # below it changes, then ENOMEM.
        Op("mprotect_bytes", (0, 1 << 63, PROT_READ)),
        Op("store", (0, 0, b"x")),
    ],
    "mprotect writable of a locked private mapping copies its pages then": [
        Op("mmap", (0, 3, PROT_READ, MAP_PRIVATE | MAP_LOCKED, False, 0)),
        Op("mmap", (4, 2, PROT_NONE, MAP_PRIVATE | MAP_LOCKED, False, 0)),
        Op("mprotect", (0, 2, RW)),
        Op("mprotect", (4, 2, RW)),
        Op("pwrite", (0, b"after mprotect")),
        Op("pwrite", (PGSIZE + 8, b"after mprotect")),
        Op("pwrite", (2 * PGSIZE, b"after mprotect")),
        Op("load", (0, 0, 14)),
        Op("load", (1, 8, 14)),
        Op("load", (2, 0, 14)),
        Op("load", (4, 0, 14)),
        Op("load", (5, 8, 14)),
        Op("store", (1, 0, b"private")),
    ],
    "a store past the end in the last page, then the file grows": [
        Op("mmap", (0, 6, RW, MAP_SHARED, False, 0)),
        Op("store", (5, PGSIZE - 50, b"beyond the end")),
        Op("load", (5, PGSIZE - 50, 14)),
        Op("truncate", (6 * PGSIZE,)),
        Op("pread", (6 * PGSIZE - 50, 14)),
        Op("load", (5, PGSIZE - 50, 14)),
    ],
    "a punched hole reads as zeros through a mapping, dirty or not": [
        Op("mmap", (0, 6, RW, MAP_SHARED, False, 0)),
        Op("load", (1, 0, 16)),
        Op("store", (2, 100, b"dirty, then punched")),
        Op("fallocate", (PUNCH, PGSIZE + 50, 2 * PGSIZE)),  # partial, whole, partial
        Op("load", (1, 40, 16)),
        Op("load", (2, 100, 19)),
        Op("load", (3, 40, 16)),
        Op("pread", (PGSIZE + 40, 32)),
        Op("store", (2, 8, b"after")),
        Op("msync", (0, 6)),
        Op("fallocate", (PUNCH, 5 * PGSIZE, 4 * PGSIZE)),  # past the end: the size stays
        Op("load", (5, 0, 16)),
        Op("fallocate", (0, 6 * PGSIZE, 100)),  # grows the file
        Op("pread", (6 * PGSIZE - 10, 200)),
        Op("fallocate", (FALLOC_FL_KEEP_SIZE, 0, 9 * PGSIZE)),
        Op("fallocate", (FALLOC_FL_PUNCH_HOLE, 0, PGSIZE)),  # EOPNOTSUPP
        Op("fallocate", (PUNCH, 0, 0)),  # EINVAL
        Op("pread", (0, 16)),
    ],
    "a private copy past a shrunken end": [
        Op("mmap", (0, 4, RW, MAP_PRIVATE, False, 0)),
        Op("store", (3, 0, b"copy")),
        Op("truncate", (2 * PGSIZE + 10,)),
        Op("load", (3, 0, 4)),
        Op("load", (2, 0, 4)),
        Op("truncate", (4 * PGSIZE,)),
        Op("load", (3, 0, 4)),
    ],
}


def agree(workdir: Path, label: str, ops: list[Op], mode: str) -> None:
    """Run `ops` on both sides over fresh copies of the file: every answer and
    the final bytes must agree."""
    theirs_path, ours_path = workdir / f"{label}.linux", workdir / f"{label}.ours"
    theirs_path.write_bytes(initial_bytes())
    ours_path.write_bytes(initial_bytes())
    linux, ours = Linux(theirs_path), Ours(ours_path, mode)
    try:
        for step, op in enumerate(ops):
            want, got = apply(linux, op), apply(ours, op)
            assert got == want, f"step {step}, {op!r}: Linux gave {want!r}, the Machine {got!r}"
    finally:
        linux.close()
    ours.close()
    assert ours_path.read_bytes() == theirs_path.read_bytes(), "the files differ at the end"


@pytest.mark.parametrize("name", list(HAND_PICKED))
def test_hand_picked_sequences_agree_with_linux(workdir: Path, mode: str, name: str) -> None:
    agree(workdir, f"hand{list(HAND_PICKED).index(name)}", HAND_PICKED[name], mode)


# mmap's bad input on a regular file (and a few near misses Linux accepts):
# name -> (prot, flags, read-only file).  The host is asked through libc's
# mmap with the raw flags, never through Python's mmap module, which would
# check them itself.
MAP_SHARED_VALIDATE = MAP_SHARED | MAP_PRIVATE
MAP_GROWSDOWN, MAP_HUGETLB, MAP_SYNC, MAP_FIXED_NOREPLACE = 0x100, 0x40000, 0x80000, 0x100000
BAD_MMAPS: dict[str, tuple[int, int, bool]] = {
    "MAP_SHARED|MAP_PRIVATE is MAP_SHARED_VALIDATE": (RW, MAP_SHARED_VALIDATE, False),
    "MAP_SHARED_VALIDATE, PROT_READ of a read-only file": (PROT_READ, MAP_SHARED_VALIDATE, True),
    "MAP_SHARED_VALIDATE, PROT_WRITE on a read-only file": (RW, MAP_SHARED_VALIDATE, True),
    "MAP_SHARED, PROT_WRITE on a read-only file": (RW, MAP_SHARED, True),
    "MAP_PRIVATE, PROT_WRITE on a read-only file": (RW, MAP_PRIVATE, True),
    "neither MAP_SHARED nor MAP_PRIVATE": (RW, 0, False),
    "neither, on a read-only file": (PROT_READ, 0, True),
    "map type 4": (RW, 0x4, False),
    "MAP_SHARED with map type bit 4": (RW, MAP_SHARED | 0x4, False),
    "MAP_PRIVATE with map type bit 4": (RW, MAP_PRIVATE | 0x4, False),
    "map type 8 (MAP_DROPPABLE) of a file": (RW, 0x8, False),
    "map type 0xf": (RW, 0xF, False),
    "MAP_SHARED_VALIDATE with unknown flag 0x200": (RW, MAP_SHARED_VALIDATE | 0x200, False),
    "MAP_SHARED_VALIDATE with unknown flag 0x200000": (RW, MAP_SHARED_VALIDATE | 0x200000, False),
    "MAP_SHARED_VALIDATE with flag bit 31": (RW, MAP_SHARED_VALIDATE | 0x8000_0000, False),
    "MAP_SHARED_VALIDATE|MAP_SYNC, no DAX": (RW, MAP_SHARED_VALIDATE | MAP_SYNC, False),
    "MAP_SHARED_VALIDATE|MAP_FIXED_NOREPLACE": (
        RW,
        MAP_SHARED_VALIDATE | MAP_FIXED_NOREPLACE,
        False,
    ),
    "MAP_SHARED_VALIDATE with known flags": (RW, MAP_SHARED_VALIDATE | 0x4000 | 0x8000, False),
    "MAP_SHARED ignores unknown flags": (RW, MAP_SHARED | 0x200 | 0x200000, False),
    "MAP_SHARED_VALIDATE, unknown flag, read-only file": (RW, MAP_SHARED_VALIDATE | 0x200, True),
    "MAP_HUGETLB of a regular file, shared": (RW, MAP_SHARED | MAP_HUGETLB, False),
    "MAP_HUGETLB of a regular file, private": (PROT_READ, MAP_PRIVATE | MAP_HUGETLB, True),
    "MAP_GROWSDOWN of a file, shared": (RW, MAP_SHARED | MAP_GROWSDOWN, False),
    "MAP_GROWSDOWN of a file, private": (RW, MAP_PRIVATE | MAP_GROWSDOWN, False),
    "MAP_GROWSDOWN, anonymous shared": (RW, MAP_SHARED | MAP_ANONYMOUS | MAP_GROWSDOWN, False),
    "MAP_GROWSDOWN, anonymous private": (RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN, False),
    "MAP_SHARED_VALIDATE, anonymous": (RW, MAP_SHARED_VALIDATE | MAP_ANONYMOUS, False),
    "neither, anonymous": (RW, MAP_ANONYMOUS, False),
    "MAP_ANONYMOUS ignores the file": (RW, MAP_SHARED | MAP_ANONYMOUS, True),
    "unknown prot bits with a file": (PROT_READ | 0x80 | 0x8, MAP_SHARED, False),
    "PROT_GROWSDOWN and PROT_GROWSUP in mmap's prot": (PROT_READ | 0x0300_0000, MAP_SHARED, True),
    "MAP_FIXED_NOREPLACE over a mapping": (RW, MAP_SHARED | MAP_FIXED_NOREPLACE, False),
    "MAP_FIXED_NOREPLACE, private": (RW, MAP_PRIVATE | MAP_FIXED_NOREPLACE, False),
}


@pytest.mark.parametrize("name", list(BAD_MMAPS))
def test_mmap_flag_and_mode_combinations_agree_with_linux(
    workdir: Path, mode: str, name: str
) -> None:
    """The same errno, or the same mapping: a second mmap over half of the
    first (MAP_FIXED_NOREPLACE refuses it), then accesses that tell shared
    from private and read-only from writable."""
    prot, flags, ro = BAD_MMAPS[name]
    agree(
        workdir,
        f"bad{list(BAD_MMAPS).index(name)}",
        [
            Op("mmap", (0, 2, prot, flags, ro, 0)),
            Op("mmap", (1, 2, prot, flags, ro, PGSIZE)),
            Op("load", (0, 0, 4)),
            Op("store", (0, 0, b"mine")),
            Op("store", (1, 0, b"half")),
            Op("pread", (0, 4)),
            Op("pread", (PGSIZE, 4)),
            Op("load", (2, 0, 4)),
        ],
        mode,
    )


def test_the_region_is_clean_after_the_differential_test() -> None:
    assert linux_vma(REGION) is None


def test_linux_judge_names_the_signals(tmp_path: Path) -> None:
    """The judge itself: Linux's own answers for a few known cases."""
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(PGSIZE))
    linux = Linux(path)
    try:
        assert linux.would(REGION, False) == SIGSEGV
        assert linux.mmap(REGION, 2 * PGSIZE, PROT_READ, MAP_SHARED, False, 0) == 0
        assert linux.would(REGION, False) == OK
        assert linux.would(REGION, True) == SIGSEGV
        assert linux.would(REGION + PGSIZE, False) == SIGBUS
        assert linux.mprotect(REGION + 4 * PGSIZE, PGSIZE, PROT_READ) == errno.ENOMEM
        assert linux.munmap(REGION + 4 * PGSIZE, PGSIZE) == 0
        assert linux.mmap(REGION, 0, PROT_READ, MAP_SHARED, False, 0) == errno.EINVAL
        assert linux.mmap(REGION, PGSIZE, PROT_WRITE | PROT_READ, MAP_SHARED, True, 0) == (
            errno.EACCES
        )
    finally:
        linux.close()
