"""Differential test of fork, MADV_DONTNEED and private mappings against Linux.

The same sequences run on Linux and on a Machine: mappings (private and
anonymous, private and shared of a file) made by the parent, then a fork,
then stores, loads, MADV_DONTNEED and MADV_WILLNEED, munmap, mprotect, pread
and pwrite by parent or child, interleaved.  On the Linux side the whole
sequence runs in a process of its own (tests/kernel/linux_fork_helper.py:
os.fork there, madvise through ctypes); on the other on one Machine with
Proc.fork.  Every answer (bytes loaded, error numbers, the signal an access
would get) and the file's final bytes must agree.

MAP_SHARED anonymous memory is left out: the model has no shmem object
behind it (kernel/fork.py).  Hypothesis draws the sequences: 300 in `make
test` (the same ones each time), 2,000 freshly drawn under PAGEMAP_SOAK=1.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pagemap import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    PGSIZE,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    BusError,
    KernelError,
    Machine,
    Proc,
    SegmentationFault,
)
from pagemap.kernel.hostfs import HostFile
from pagemap.kernel.madvise import MADV_DONTNEED, MADV_NORMAL, MADV_REMOVE, MADV_WILLNEED

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux is the judge")

HELPER = Path(__file__).with_name("linux_fork_helper.py")
REGION = 0x1000_0000_0000
REGION_PAGES = 8
FILE_PAGES = 4
RW = PROT_READ | PROT_WRITE
SOAK = os.environ.get("PAGEMAP_SOAK", "") == "1"
EXAMPLES = 2_000 if SOAK else 300

Op = list[Any]  # [who, kind, args...], as the helper reads it


def initial_bytes() -> bytes:
    return b"".join(bytes([0x41 + i]) * PGSIZE for i in range(FILE_PAGES))


class Linux:
    """The helper process, which runs each sequence on Linux."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HELPER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, path: Path, ops: list[Op]) -> list[Any]:
        """Run `ops` on Linux over `path`: each operation's answer."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"path": str(path), "ops": ops}) + "\n")
        self.proc.stdin.flush()
        answers = json.loads(self.proc.stdout.readline())
        assert isinstance(answers, list), f"the Linux side failed: {answers}"
        return answers

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


class Ours:
    """A Machine over a copy of the file; "p" and, after the fork, "c"."""

    def __init__(self, path: Path) -> None:
        self.m = Machine(cores=2, memory=(64 + 1) * PGSIZE, executor="sim", seed=0)
        self.file: HostFile = self.m.open(path, "r+")
        self.procs: dict[str, Proc] = {"p": self.m.process()}

    def close(self) -> None:
        for proc in self.procs.values():
            proc.exit()
        self.file.fsync()

    def run(self, op: Op) -> Any:
        who, kind, args = op[0], op[1], op[2:]
        proc = self.procs[who]
        addr = REGION + args[0] * PGSIZE if args and kind not in ("pread", "pwrite") else 0
        try:
            return self._run(proc, kind, addr, args)
        except KernelError as exc:
            if kind in ("load", "store"):
                raise
            return exc.errno

    def _run(self, proc: Proc, kind: str, addr: int, args: list[Any]) -> Any:
        if kind == "fork":
            self.procs["c"] = proc.fork()
            return 0
        if kind == "mmap":
            _, n, prot, flags, foff = args
            f = None if flags & MAP_ANONYMOUS else self.file
            proc.mmap(n * PGSIZE, prot, flags | MAP_FIXED, f, foff, addr)
            return 0
        if kind == "munmap":
            proc.munmap(addr, args[1] * PGSIZE)
            return 0
        if kind == "mprotect":
            proc.mprotect(addr, args[1] * PGSIZE, args[2])
            return 0
        if kind == "madvise":
            proc.madvise(addr, args[1] * PGSIZE, args[2])
            return 0
        if kind == "madvise_raw":
            proc.madvise(REGION + args[0], args[1] % (1 << 64), args[2])
            return 0
        if kind in ("mlock", "munlock"):
            call = proc.mlock if kind == "mlock" else proc.munlock
            call(addr, args[1] * PGSIZE)
            return 0
        if kind in ("mlock_raw", "munlock_raw"):
            call = proc.mlock if kind == "mlock_raw" else proc.munlock
            call(REGION + args[0], args[1] % (1 << 64))
            return 0
        if kind == "load":
            try:
                return proc.load(addr + args[1], args[2]).hex()
            except SegmentationFault:
                return "SIGSEGV"
            except BusError:
                return "SIGBUS"
        if kind == "store":
            try:
                proc.store(addr + args[1], bytes.fromhex(args[2]))
                return "ok"
            except SegmentationFault:
                return "SIGSEGV"
            except BusError:
                return "SIGBUS"
        if kind == "pread":
            return self.file.pread(args[1], args[0]).hex()
        if kind == "pwrite":
            return self.file.pwrite(bytes.fromhex(args[1]), args[0])
        raise ValueError(kind)


def agree(linux: Linux, workdir: Path, label: str, ops: list[Op]) -> None:
    """`ops` on both sides, over fresh copies of the file: every answer and
    the final bytes agree."""
    theirs, mine = workdir / f"{label}.linux", workdir / f"{label}.ours"
    theirs.write_bytes(initial_bytes())
    mine.write_bytes(initial_bytes())
    want = linux.run(theirs, ops)
    ours = Ours(mine)
    got = [ours.run(op) for op in ops]
    for step, (op, w, g) in enumerate(zip(ops, want, got, strict=True)):
        assert g == w, f"step {step}, {op!r}: Linux gave {w!r}, the Machine {g!r}"
    ours.close()
    assert ours.m.check_quiescent() == []
    assert mine.read_bytes() == theirs.read_bytes(), "the files differ at the end"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("linux_fork_diff")


@pytest.fixture(scope="module")
def linux() -> Iterator[Linux]:
    side = Linux()
    yield side
    side.close()


# -- the sequences ---------------------------------------------------------------------

page_no = st.integers(0, REGION_PAGES - 1)
span = st.tuples(page_no, st.sampled_from((1, 2, 1, 3))).map(
    lambda t: (t[0], min(t[1], REGION_PAGES - t[0]))
)
in_page = st.integers(0, PGSIZE - 16)
data = st.binary(min_size=1, max_size=12).map(bytes.hex)


@dataclass(frozen=True)
class Kinds:
    """The mappings of the sequences: private anonymous, private of the
    file, shared of the file (with an offset inside the file)."""

    flags: int
    prot: int
    foff: int


mapping = st.builds(
    Kinds,
    st.sampled_from((MAP_PRIVATE | MAP_ANONYMOUS, MAP_PRIVATE, MAP_PRIVATE, MAP_SHARED)),
    st.sampled_from((RW, RW, PROT_READ)),
    st.sampled_from((0, 0, PGSIZE, 2 * PGSIZE)),
)


def mmap_op(who: str, where: tuple[int, int], kind: Kinds) -> Op:
    pg, n = where
    # Never past the file's end: a fault there is a SIGBUS on both sides,
    # which the plain test already covers.
    n = max(1, min(n, FILE_PAGES - kind.foff // PGSIZE))
    return [who, "mmap", pg, n, kind.prot, kind.flags, kind.foff]


def access(who: str) -> st.SearchStrategy[Op]:
    return st.one_of(
        st.builds(lambda pg, off: [who, "load", pg, off, 8], page_no, in_page),
        st.builds(lambda pg, off, d: [who, "store", pg, off, d], page_no, in_page, data),
    )


def after_fork(who: str) -> st.SearchStrategy[Op]:
    advice = st.sampled_from((MADV_DONTNEED, MADV_DONTNEED, MADV_WILLNEED, MADV_NORMAL))
    return st.one_of(
        access(who),
        access(who),
        access(who),
        st.builds(lambda w, a: [who, "madvise", *w, a], span, advice),
        st.builds(lambda w: [who, "munmap", *w], span),
        st.builds(lambda w, k: [who, k, *w], span, st.sampled_from(("mlock", "munlock"))),
        st.builds(
            lambda w, prot: [who, "mprotect", *w, prot], span, st.sampled_from((RW, PROT_READ))
        ),
        st.builds(lambda w, k: mmap_op(who, w, k), span, mapping),
        st.builds(
            lambda off, d: [who, "pwrite", off, d], st.integers(0, FILE_PAGES * PGSIZE - 16), data
        ),
    )


@st.composite
def sequences(draw: st.DrawFn) -> list[Op]:
    ops: list[Op] = []
    for _ in range(draw(st.integers(1, 3))):
        ops.append(mmap_op("p", draw(span), draw(mapping)))
    for _ in range(draw(st.integers(0, 4))):
        ops.append(draw(access("p")))
    ops.append(["p", "fork"])
    for _ in range(draw(st.integers(1, 14))):
        ops.append(draw(after_fork(draw(st.sampled_from(("p", "c"))))))
    # Both sides read back what they have at the end.
    for who in ("p", "c"):
        for pg in range(REGION_PAGES):
            ops.append([who, "load", pg, 0, 8])
    return ops


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not SOAK,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(sequences())
def test_fork_and_madvise_agree_with_linux(linux: Linux, workdir: Path, ops: list[Op]) -> None:
    agree(linux, workdir, "seq", ops)


HAND_PICKED: dict[str, list[Op]] = {
    "the child writes, the parent keeps its bytes; the parent writes, the child keeps": [
        ["p", "mmap", 0, 2, RW, MAP_PRIVATE | MAP_ANONYMOUS, 0],
        ["p", "store", 0, 0, "6f6c64"],
        ["p", "fork"],
        ["c", "store", 0, 0, "636869"],
        ["p", "load", 0, 0, 3],
        ["p", "store", 0, 1, "7878"],
        ["c", "load", 0, 0, 3],
        ["p", "load", 0, 0, 3],
    ],
    "DONTNEED in the child after a private copy refaults the file; the parent keeps its copy": [
        ["p", "mmap", 0, 2, RW, MAP_PRIVATE, 0],
        ["p", "store", 0, 8, "636f7079"],
        ["p", "fork"],
        ["c", "madvise", 0, 2, MADV_DONTNEED],
        ["c", "load", 0, 8, 4],
        ["p", "load", 0, 8, 4],
        ["c", "pwrite", 12, "66696c65"],
        ["c", "load", 0, 12, 4],
        ["p", "load", 0, 12, 4],
        ["p", "load", 1, 0, 4],
    ],
    "a shared file mapping stays shared after fork; DONTNEED keeps its bytes": [
        ["p", "mmap", 0, 1, RW, MAP_SHARED, 0],
        ["p", "fork"],
        ["c", "store", 0, 0, "7368617265"],
        ["p", "madvise", 0, 1, MADV_DONTNEED],
        ["p", "load", 0, 0, 5],
        ["p", "pread", 0, 5],
    ],
    "munmap in the child leaves the parent its page to reuse": [
        ["p", "mmap", 0, 1, RW, MAP_PRIVATE | MAP_ANONYMOUS, 0],
        ["p", "store", 0, 0, "31"],
        ["p", "fork"],
        ["c", "munmap", 0, 1],
        ["p", "store", 0, 0, "32"],
        ["c", "load", 0, 0, 1],
        ["p", "load", 0, 0, 1],
    ],
    "memory locks are not inherited": [
        ["p", "mmap", 0, 2, RW, MAP_PRIVATE | MAP_ANONYMOUS, 0],
        ["p", "store", 0, 0, "6c"],
        ["p", "mlock", 0, 1],
        ["p", "fork"],
        ["c", "madvise", 0, 2, MADV_DONTNEED],
        ["p", "madvise", 0, 2, MADV_DONTNEED],
        ["c", "load", 0, 0, 1],
        ["p", "load", 0, 0, 1],
    ],
    "a read-only private mapping forked, then made writable in the child": [
        ["p", "mmap", 0, 2, PROT_READ, MAP_PRIVATE, PGSIZE],
        ["p", "load", 1, 0, 2],
        ["p", "fork"],
        ["c", "store", 0, 0, "78"],
        ["c", "mprotect", 0, 2, RW],
        ["c", "store", 0, 0, "78"],
        ["p", "load", 0, 0, 2],
        ["c", "load", 0, 0, 2],
    ],
}


@pytest.mark.parametrize("name", list(HAND_PICKED))
def test_hand_picked_fork_sequences_agree_with_linux(
    linux: Linux, workdir: Path, name: str
) -> None:
    agree(linux, workdir, f"hand{list(HAND_PICKED).index(name)}", HAND_PICKED[name])


# madvise's bad input: name -> (byte offset into the region, length, advice).
# The region's first two pages are mapped (a shared file mapping, then a
# private anonymous one); page 3 is a hole.  MADV_REMOVE of a shared writable
# file mapping is left out: Linux's filesystems punch holes, ours cannot
# (EOPNOTSUPP, kernel/madvise.py).
MADVISE_BAD: dict[str, tuple[int, int, int]] = {
    "unaligned start": (1, PGSIZE, MADV_DONTNEED),
    "unknown advice": (0, PGSIZE, 12345),
    "negative advice": (0, PGSIZE, -1),
    "a length that wraps": (0, -PGSIZE, MADV_DONTNEED),
    "length 0": (0, 0, MADV_DONTNEED),
    "a hole": (3 * PGSIZE, PGSIZE, MADV_DONTNEED),
    "a range over the hole": (PGSIZE, 3 * PGSIZE, MADV_DONTNEED),
    "willneed over the hole": (2 * PGSIZE, 2 * PGSIZE, MADV_WILLNEED),
    "remove of anonymous memory": (PGSIZE, PGSIZE, MADV_REMOVE),
    "remove of a private mapping of a file": (2 * PGSIZE, PGSIZE, MADV_REMOVE),
    "an unaligned length rounds up": (0, 10, MADV_DONTNEED),
}


# mlock's and munlock's: name -> (call, byte offset into the region, length),
# over the same three pages and the hole at page 3.
MLOCK_BAD: dict[str, tuple[str, int, int]] = {
    "an unaligned start rounds down": ("mlock_raw", 10, PGSIZE),
    "an unaligned length rounds up": ("mlock_raw", PGSIZE, 1),
    "a length that rounds up to 2**64 is nothing": ("mlock_raw", 0, -1),
    "a length whose end wraps": ("mlock_raw", 0, -2 * PGSIZE),
    "length 0": ("mlock_raw", 0, 0),
    "a hole": ("mlock_raw", 3 * PGSIZE, PGSIZE),
    "a range into the hole": ("mlock_raw", 0, 4 * PGSIZE),
    "munlock of a hole": ("munlock_raw", 3 * PGSIZE, PGSIZE),
    "munlock over the hole": ("munlock_raw", PGSIZE, 3 * PGSIZE),
    "munlock's length that wraps": ("munlock_raw", 0, -2 * PGSIZE),
}


@pytest.mark.parametrize("name", list(MLOCK_BAD))
def test_mlock_bad_input_agrees_with_linux(linux: Linux, workdir: Path, name: str) -> None:
    call, off, length = MLOCK_BAD[name]
    agree(
        linux,
        workdir,
        f"lock{list(MLOCK_BAD).index(name)}",
        [
            ["p", "mmap", 0, 1, RW, MAP_SHARED, 0],
            ["p", "mmap", 1, 1, RW, MAP_PRIVATE | MAP_ANONYMOUS, 0],
            ["p", "mmap", 2, 1, PROT_READ, MAP_PRIVATE, 0],
            ["p", call, off, length],
            # DONTNEED answers EINVAL for a locked region: what got locked shows.
            ["p", "madvise", 0, 1, MADV_DONTNEED],
            ["p", "madvise", 1, 1, MADV_DONTNEED],
            ["p", "madvise", 2, 1, MADV_DONTNEED],
        ],
    )


@pytest.mark.parametrize("name", list(MADVISE_BAD))
def test_madvise_bad_input_agrees_with_linux(linux: Linux, workdir: Path, name: str) -> None:
    off, length, advice = MADVISE_BAD[name]
    agree(
        linux,
        workdir,
        f"bad{list(MADVISE_BAD).index(name)}",
        [
            ["p", "mmap", 0, 1, RW, MAP_SHARED, 0],
            ["p", "mmap", 1, 1, RW, MAP_PRIVATE | MAP_ANONYMOUS, 0],
            ["p", "mmap", 2, 1, PROT_READ, MAP_PRIVATE, 0],
            ["p", "store", 1, 0, "7a"],
            ["p", "madvise_raw", off, length, advice],
            ["p", "load", 1, 0, 1],
        ],
    )


def test_the_errno_of_a_bad_advice_is_einval_on_the_machine_too() -> None:
    m = Machine(cores=1, memory=8 * PGSIZE, executor="sim", seed=0)
    proc = m.process()
    with pytest.raises(KernelError) as exc:
        proc.madvise(REGION, PGSIZE, 12345)
    assert exc.value.errno == errno.EINVAL
    assert PROT_NONE == 0  # PROT_NONE mappings are left to the plain test
