"""Property: any sequence of pwrite / pread / truncate / fsync / writeback /
remove_contig on a file of a small machine reads exactly what the same
sequence reads on a plain host file (os.pwrite / os.pread / os.ftruncate), and
leaves the same bytes behind."""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Callable
from typing import TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from pagemap import PGSIZE, Machine, OutOfMemory
from pagemap.kernel.hostfs import HostFile
from tests.conftest import sim

FRAMES = 4  # fewer than the file's pages: eviction and re-reading happen
MAX_PAGES = 6
ALL = 1 << 30
T = TypeVar("T")

offsets = st.integers(0, MAX_PAGES * PGSIZE)
lengths = st.one_of(st.integers(0, 64), st.integers(0, 2 * PGSIZE + 1))
ops = st.one_of(
    st.tuples(st.just("write"), offsets, lengths, st.integers(0, 2**32)),
    st.tuples(st.just("read"), offsets, lengths),
    st.tuples(st.just("truncate"), offsets),
    st.tuples(st.just("fsync")),
    st.tuples(st.just("writeback"), st.integers(0, MAX_PAGES), st.integers(0, MAX_PAGES)),
    st.tuples(st.just("remove"), st.integers(0, MAX_PAGES), st.integers(0, MAX_PAGES + 1)),
)


def with_frames(f: HostFile, call: Callable[[], T]) -> T:
    """call(), evicting the file's pages and retrying once if frames ran out
    (a small machine without a flusher: the test plays the flusher)."""
    try:
        return call()
    except OutOfMemory:
        f.mapping.remove_contig(0, ALL)
        return call()


def write_all(f: HostFile, data: bytes, offset: int) -> None:
    done = 0
    while done < len(data):
        done += with_frames(f, lambda: f.pwrite(data[done:], offset + done))
        if done < len(data):  # a short write: out of frames part way
            f.mapping.remove_contig(0, ALL)


def read_all(f: HostFile, nbytes: int, offset: int) -> bytes:
    got = b""
    while len(got) < nbytes:
        part = with_frames(f, lambda: f.pread(nbytes - len(got), offset + len(got)))
        if not part:
            break
        got += part
        f.mapping.remove_contig(0, ALL)
    return got


def run_sequence(machine: Machine, dirname: str, initial: bytes, steps: list[tuple]) -> None:  # type: ignore[type-arg]
    ours_path = os.path.join(dirname, "ours")
    plain_path = os.path.join(dirname, "plain")
    for p in (ours_path, plain_path):
        with open(p, "wb") as out:
            out.write(initial)
    f = machine.open(ours_path, "r+")
    plain = os.open(plain_path, os.O_RDWR)
    try:
        for step in steps:
            kind = step[0]
            if kind == "write":
                _, offset, length, seed = step
                data = random.Random(seed).randbytes(length)
                write_all(f, data, offset)
                os.pwrite(plain, data, offset)
            elif kind == "read":
                _, offset, length = step
                assert read_all(f, length, offset) == os.pread(plain, length, offset), step
            elif kind == "truncate":
                f.truncate(step[1])
                os.ftruncate(plain, step[1])
            elif kind == "fsync":
                f.fsync()
            elif kind == "writeback":
                f.mapping.writeback(step[1], step[2])
            else:
                f.mapping.remove_contig(step[1], step[2])
            assert f.size == os.fstat(plain).st_size, step
        assert machine.check_quiescent() == []
        expect = os.pread(plain, ALL, 0)
        assert read_all(f, ALL, 0) == expect
        f.fsync()
        with open(ours_path, "rb") as host:
            assert host.read() == expect
    finally:
        os.close(plain)


@settings(max_examples=200, deadline=None)
@given(
    initial_pages=st.integers(0, 3),
    initial_tail=st.integers(0, PGSIZE - 1),
    steps=st.lists(ops, max_size=25),
)
def test_file_matches_a_plain_host_file(
    initial_pages: int,
    initial_tail: int,
    steps: list[tuple],  # type: ignore[type-arg]
) -> None:
    initial = random.Random(initial_tail).randbytes(initial_pages * PGSIZE + initial_tail)
    with tempfile.TemporaryDirectory(prefix="pagemap-prop-") as dirname:
        run_sequence(sim(0, frames=FRAMES), dirname, initial, steps)
