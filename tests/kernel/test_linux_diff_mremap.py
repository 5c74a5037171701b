"""Differential test of mremap (issue 21): the sequences of test_linux_diff.py,
with mremap among them (grow, shrink, move, MREMAP_FIXED; shared and private
file mappings and anonymous ones), on Linux through libc's syscall() and on
a Machine; every answer, every load, and the final file bytes must agree.

The test's region and judge are test_linux_diff.py's.  An mremap that
MREMAP_MAYMOVE moved out of the region (each kernel picks its own free
range, so the addresses cannot agree) is answered "moved" and moved back on
both sides with MREMAP_FIXED to the page the operation names, so that later
accesses reach it.  The range an mremap grows or moves is drawn inside one
mapping as both kernels see it (Linux's /proc/self/maps and the Machine's
regions): Linux does not merge some regions the Machine does (anonymous
memory faulted in separately), and where one kernel sees two regions and
the other one, a grow across the seam is EFAULT on one side only.

`make test` runs 300 sequences, the same each time; `make soak`
(PAGEMAP_SOAK=1) 2,000, freshly drawn; PAGEMAP_DIFF_EXAMPLES sets any number.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pagemap import MAP_ANONYMOUS, MAP_LOCKED, MAP_PRIVATE, MAP_SHARED, PGSIZE, PROT_READ
from pagemap.kernel.errors import KernelError
from pagemap.kernel.mremap import MREMAP_FIXED, MREMAP_MAYMOVE
from pagemap.kernel.vmr import find_vmr
from tests.kernel.test_linux_diff import (
    LIBC,
    REGION,
    REGION_PAGES,
    RW,
    WORD,
    Linux,
    Op,
    Ours,
    accesses,
    addr_of,
    file_ops,
    initial_bytes,
    linux_vma,
    mmaps,
    page_no,
    region_ops,
    weighted,
)
from tests.kernel.test_linux_diff import apply as apply_base

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux is the judge")

SYS_MREMAP = 25  # x86-64
REGION_END = REGION + REGION_PAGES * PGSIZE
MOVE = MREMAP_MAYMOVE
FIXED = MREMAP_MAYMOVE | MREMAP_FIXED

SOAK = os.environ.get("PAGEMAP_SOAK", "") == "1"
EXAMPLES_FROM_ENV = os.environ.get("PAGEMAP_DIFF_EXAMPLES")
EXAMPLES = int(EXAMPLES_FROM_ENV or (2000 if SOAK else 300))


def _syscall() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    if LIBC is None:
        return None
    fn = LIBC.syscall
    fn.restype = ctypes.c_long
    fn.argtypes = [ctypes.c_long] + [ctypes.c_ulong] * 5
    return fn


SYSCALL = _syscall() if sys.platform.startswith("linux") else None


def linux_mremap(
    addr: int, old_len: int, new_len: int, flags: int, new_addr: int
) -> tuple[int, int]:
    """(errno, address) of Linux's mremap; errno 0 on success."""
    assert SYSCALL is not None
    ctypes.set_errno(0)
    ret = SYSCALL(SYS_MREMAP, addr, old_len, new_len, flags, new_addr)
    if ret == -1:
        return ctypes.get_errno(), 0
    return 0, ret % WORD


def ours_mremap(
    ours: Ours, addr: int, old_len: int, new_len: int, flags: int, new_addr: int
) -> tuple[int, int]:
    try:
        return 0, ours.proc.mremap(addr, old_len, new_len, flags, new_addr)
    except KernelError as exc:
        return exc.errno or -1, 0


def remap(
    side: Linux | Ours, addr: int, old_len: int, new_len: int, flags: int, new_addr: int, park: int
) -> tuple[str, int]:
    """mremap on one side: ("errno", n), ("at", page in the region), or
    ("moved", page) for a move out of the region, brought back to `park`."""

    def call(*a: int) -> tuple[int, int]:
        if isinstance(side, Linux):
            return linux_mremap(*a)
        return ours_mremap(side, *a)

    err, ret = call(addr, old_len, new_len, flags, new_addr)
    if err:
        return "errno", err
    if REGION <= ret < REGION_END:
        return "at", (ret - REGION) // PGSIZE
    back = addr_of(park)
    err, again = call(ret, new_len, new_len, FIXED, back)
    assert (err, again) == (0, back), f"could not bring {ret:#x} back to {back:#x}: errno {err}"
    return "moved", park


def apply(side: Linux | Ours, op: Op) -> object:
    a = op.args
    if op.kind == "mremap":  # (page, old pages, new pages, flags, target page, park page)
        pg, old_n, new_n, flags, target, park = (int(x) for x in a)
        return remap(
            side, addr_of(pg), old_n * PGSIZE, new_n * PGSIZE, flags, addr_of(target), park
        )
    if op.kind == "mremap_raw":  # any values, as the caller gives them
        addr, old_len, new_len, flags, new_addr = (int(x) for x in a)
        return remap(side, addr, old_len, new_len, flags, new_addr, 0)
    return apply_base(side, op)


# -- drawing an mremap ---------------------------------------------------------------------


def common_run(ours: Ours, pg: int) -> int:
    """Pages from `pg` that lie in one mapping on both sides (0 if unmapped)."""
    addr = addr_of(pg)
    vma, vmr = linux_vma(addr), find_vmr(ours.proc.vmrs, addr)
    if vma is None or vmr is None:
        return 0
    return (min(vma.end, vmr.end, REGION_END) - addr) // PGSIZE


def draw_mremap(data: st.DataObject, ours: Ours, mapped: list[int], label: str) -> Op:
    pg = data.draw(st.sampled_from(mapped) if mapped else page_no, label=f"{label} page")
    run = common_run(ours, pg)
    old_n = data.draw(st.integers(1, max(run, 1)) if run else st.integers(1, 3), label="old")
    kind = data.draw(st.sampled_from(("grow", "shrink", "fixed", "grow", "same")), label="kind")
    room = REGION_PAGES - pg
    if kind == "shrink" and old_n > 1:
        new_n = data.draw(st.integers(1, old_n - 1), label="new")
    elif kind == "same":
        new_n = old_n
    else:
        new_n = data.draw(st.integers(1, max(1, min(room, 6))), label="new")
    if kind == "fixed":
        flags = FIXED
        target = data.draw(st.integers(0, REGION_PAGES - new_n), label="target")
    else:
        flags = data.draw(st.sampled_from((MOVE, 0, MOVE)), label="flags")
        target = 0
        new_n = min(new_n, room)  # a grow in place stays inside the region
    vmr = find_vmr(ours.proc.vmrs, addr_of(pg))
    if vmr is not None and vmr.file is None and vmr.shared:
        # Linux's shared anonymous memory is a shmem file of the size mmap
        # gave it: pages grown past it are SIGBUS there, zero-filled here.
        new_n = min(new_n, old_n)
    park = data.draw(st.integers(0, REGION_PAGES - new_n), label="park")
    return Op("mremap", (pg, old_n, new_n, flags, target, park))


def next_kind(mapped: list[int]) -> st.SearchStrategy[str]:
    if not mapped:
        return st.sampled_from(("mmap", "mmap", "mmap", "other"))
    return st.sampled_from(("access",) * 5 + ("mremap",) * 3 + ("mmap", "other", "other"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if linux_vma(REGION) is not None or linux_vma(REGION_END - 1) is not None:
        pytest.skip("the test's address region is taken in this process")
    return tmp_path_factory.mktemp("linux_diff_mremap")


def run_both(
    workdir: Path, label: str, ops: list[Op] | None, data: st.DataObject | None, steps: int
) -> None:
    """Run `ops` (or `steps` drawn ones) on both sides over fresh copies of
    the file: every answer and the final bytes must agree."""
    theirs_path, ours_path = workdir / f"{label}.linux", workdir / f"{label}.ours"
    theirs_path.write_bytes(initial_bytes())
    ours_path.write_bytes(initial_bytes())
    linux, ours = Linux(theirs_path), Ours(ours_path)
    try:
        for step in range(len(ops) if ops is not None else steps):
            if ops is not None:
                op = ops[step]
            else:
                assert data is not None
                mapped = ours.mapped_pages()
                kind = data.draw(next_kind(mapped), label=f"step {step}")
                if kind == "mremap":
                    op = draw_mremap(data, ours, mapped, f"step {step}")
                elif kind == "access":
                    op = data.draw(accesses(st.sampled_from(mapped)), label=f"step {step}")
                elif kind == "mmap":
                    op = data.draw(mmaps, label=f"step {step}")
                else:
                    op = data.draw(weighted((region_ops, 1), (file_ops, 1)), label=f"step {step}")
            want, got = apply(linux, op), apply(ours, op)
            assert got == want, f"step {step}, {op!r}: Linux gave {want!r}, the Machine {got!r}"
            if op.kind == "mremap" and data is not None:
                outcome = want[0] if isinstance(want, tuple) else "?"
                event(f"mremap flags={op.args[3]!r}: {outcome!r}")
        # Contents read back: every page mapped on both sides, as each sees it.
        for pg in ours.mapped_pages():
            op = Op("load", (pg, 0, 16))
            want, got = apply(linux, op), apply(ours, op)
            assert got == want, f"at the end, {op!r}: Linux gave {want!r}, the Machine {got!r}"
    finally:
        linux.close()
    ours.close()
    assert ours_path.read_bytes() == theirs_path.read_bytes(), "the files differ at the end"
    assert ours.m.check_quiescent() == []


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES_FROM_ENV is None and not SOAK,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.integers(1, 30), st.data())
def test_mremap_agrees_with_linux(workdir: Path, steps: int, data: st.DataObject) -> None:
    run_both(workdir, "drawn", None, data, steps)


def _map(pg: int, n: int, prot: int, flags: int, foff: int = 0, ro: bool = False) -> Op:
    return Op("mmap", (pg, n, prot, flags, ro, foff))


SHARED, PRIVATE, ANON = MAP_SHARED, MAP_PRIVATE, MAP_PRIVATE | MAP_ANONYMOUS
SHANON = MAP_SHARED | MAP_ANONYMOUS


def _stamp(pg: int, tag: bytes) -> Op:
    return Op("store", (pg, 8, tag))


def _look(pg: int) -> Op:
    return Op("load", (pg, 0, 16))


def _raw(pg: int, old: int, new: int, flags: int, new_addr: int) -> Op:
    return Op("mremap_raw", (addr_of(pg), old, new, flags, new_addr))


# mremap's bad input and its corners: name -> the operations.  Each mremap
# is followed by loads that show what it changed, or that it changed nothing.
P = PGSIZE
BAD_MREMAPS: dict[str, list[Op]] = {
    "an unknown flag": [_map(0, 2, RW, SHARED), _raw(0, P, 2 * P, 8, 0), _look(1)],
    "MREMAP_DONTUNMAP is not modelled and grows nothing here": [
        _map(0, 2, RW, ANON),
        _raw(0, P, 2 * P, MOVE | 4, 0),
    ],
    "MREMAP_FIXED without MREMAP_MAYMOVE": [
        _map(0, 2, RW, SHARED),
        _raw(0, P, P, MREMAP_FIXED, addr_of(6)),
        _look(6),
    ],
    "an old address not page aligned": [_map(0, 2, RW, SHARED), _raw(0, P, P, MOVE, 0)],
    "a new length of 0": [_map(0, 2, RW, SHARED), _raw(0, P, 0, MOVE, 0), _look(0)],
    "a new length that wraps to 0": [_map(0, 2, RW, SHARED), _raw(0, P, WORD - 1, MOVE, 0)],
    "a new length past the top of user space": [
        _map(0, 2, RW, SHARED),
        _raw(0, P, 1 << 47, MOVE, 0),
    ],
    "a fixed target not page aligned": [
        _map(0, 2, RW, SHARED),
        _raw(0, P, P, FIXED, addr_of(6) + 8),
    ],
    "a fixed target overlapping the source": [
        _map(0, 4, RW, SHARED),
        _raw(0, 2 * P, 2 * P, FIXED, addr_of(1)),
        _look(1),
    ],
    "nothing mapped at the old address": [_map(2, 2, RW, SHARED), _raw(0, P, 2 * P, MOVE, 0)],
    "a grow past the end of the region": [
        _map(0, 2, RW, SHARED),
        _map(2, 2, RW, SHARED, foff=4 * P),
        _raw(0, 3 * P, 4 * P, MOVE, 0),
        _look(2),
    ],
    "a grow blocked by the next region, no MREMAP_MAYMOVE": [
        _map(0, 2, RW, SHARED),
        _map(2, 1, PROT_READ, ANON),
        _raw(0, 2 * P, 3 * P, 0, 0),
        _look(2),
    ],
    "a grow in place into free room, shared file": [
        _map(0, 2, RW, SHARED),
        _stamp(1, b"before"),
        _raw(0, 2 * P, 4 * P, 0, 0),
        _look(1),
        _look(3),
        _stamp(3, b"grown"),
        Op("pread", (3 * P + 8, 5)),
    ],
    "a grow that must move, with MREMAP_MAYMOVE, private file with a copy": [
        _map(0, 2, RW, PRIVATE),
        _stamp(0, b"mine"),
        _map(2, 1, RW, ANON),
        Op("mremap", (0, 2, 3, MOVE, 0, 5)),
        _look(5),
        _look(6),
        _look(7),
        Op("pwrite", (P + 8, b"file")),
        _look(6),
    ],
    "a shrink of the middle of a region": [
        _map(0, 4, RW, SHARED),
        _raw(1, 3 * P, P, 0, 0),
        _look(1),
        _look(2),
        _look(0),
    ],
    "a shrink across two regions": [
        _map(0, 2, RW, SHARED),
        _map(2, 2, RW, ANON),
        _raw(0, 4 * P, P, 0, 0),
        _look(1),
        _look(3),
    ],
    "a fixed shrinking move whose cut tail passes its region": [
        _map(0, 2, RW, SHARED),
        _map(6, 1, RW, ANON),
        _stamp(6, b"target"),
        _raw(0, 3 * P, P, FIXED, addr_of(6)),
        _look(6),
    ],
    "a fixed move over another mapping, anonymous private": [
        _map(0, 2, RW, ANON),
        _stamp(0, b"zero"),
        _stamp(1, b"one"),
        _map(5, 3, PROT_READ, SHARED),
        _raw(0, 2 * P, 2 * P, FIXED, addr_of(6)),
        _look(5),
        _look(6),
        _look(7),
        _look(0),
    ],
    "a fixed same-size move of two regions with a gap keeps the gap": [
        _map(0, 1, RW, SHARED),
        _map(2, 1, RW, SHANON),
        _stamp(2, b"anon"),
        _raw(0, 3 * P, 3 * P, FIXED, addr_of(6)),
        _look(6),
        _look(7),
        _look(8),
    ],
    "a fixed same-size move starting in a gap": [
        _map(1, 1, RW, SHARED),
        _raw(0, 2 * P, 2 * P, FIXED, addr_of(6)),
        _look(1),
        _look(7),
    ],
    "old length 0 of a private mapping": [
        _map(0, 2, RW, PRIVATE),
        _raw(0, 0, P, FIXED, addr_of(6)),
    ],
    "old length 0 duplicates a shared file mapping": [
        _map(0, 2, RW, SHARED, foff=P),
        _raw(0, 0, 2 * P, FIXED, addr_of(6)),
        _stamp(7, b"dup"),
        _look(1),
        _look(0),
    ],
    "a fixed grow of a locked private mapping populates the new pages": [
        _map(0, 1, RW, PRIVATE | MAP_LOCKED),
        _raw(0, P, 3 * P, FIXED, addr_of(6)),
        Op("pwrite", (2 * P + 8, b"later")),
        _look(8),
        _look(6),
    ],
    "a grow of a locked private mapping populates the new pages": [
        _map(0, 1, RW, PRIVATE | MAP_LOCKED),
        _raw(0, P, 3 * P, 0, 0),
        Op("pwrite", (2 * P + 8, b"later")),
        _look(2),
        _look(1),
    ],
    "a move of shared anonymous memory, then a shrink": [
        _map(0, 2, RW, SHANON),
        _stamp(0, b"shanon"),
        _stamp(1, b"second"),
        _raw(0, 2 * P, 2 * P, FIXED, addr_of(8)),
        _look(8),
        _look(9),
        _look(0),
        _raw(8, 2 * P, P, 0, 0),
        _look(9),
    ],
    "a move of a mapping past the end of the file, then a truncate": [
        _map(0, 8, PROT_READ, SHARED),
        _look(5),
        _raw(0, 8 * P, 7 * P, FIXED, addr_of(4)),
        _look(9),
        _look(10),
        Op("truncate", (2 * P,)),
        _look(5),
        _look(6),
    ],
}


@pytest.mark.parametrize("name", list(BAD_MREMAPS))
def test_mremap_bad_input_and_corners_agree_with_linux(workdir: Path, name: str) -> None:
    run_both(workdir, f"bad{list(BAD_MREMAPS).index(name)}", BAD_MREMAPS[name], None, 0)


def test_the_judge_reads_linuxs_errors() -> None:
    """The judge itself: Linux's own answers for two known cases."""
    assert linux_mremap(REGION, PGSIZE, PGSIZE, 8, 0) == (errno.EINVAL, 0)
    assert linux_mremap(REGION, PGSIZE, 2 * PGSIZE, MOVE, 0) == (errno.EFAULT, 0)
