"""Files under concurrency: writes, reads, truncate, writeback and removal
racing, under the SimExecutor over many seeds and on real threads.  Each
scenario ends with the durability oracle: the host file equals what the
writes and truncates, applied in order, say it must hold."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pagemap import PGSIZE, Machine
from tests.conftest import SIM_SEEDS, sim

ALL = 1 << 30
FRAMES = 8
SEEDS = SIM_SEEDS
THREAD_ROUNDS = range(10)


def threads(frames: int = FRAMES) -> Machine:
    return Machine(cores=4, memory=(frames + 1) * PGSIZE, executor="threads")


KINDS = [
    ("sim", lambda seed: sim(seed, frames=FRAMES), SEEDS),
    ("threads", lambda seed: threads(), THREAD_ROUNDS),
]
Make = Callable[[int], Machine]


def assert_quiet(machine: Machine) -> None:
    assert machine.check_quiescent() == []
    cached = sum(pm.nr_pages for pm in machine.page_maps)
    assert machine.allocator.nr_free + cached == FRAMES, "a frame leaked"


def write_racing_writeback(machine: Machine, path: Path) -> None:
    path.write_bytes(b"")
    f = machine.open(path, "r+")
    chunks = [bytes([65 + i]) * 700 for i in range(8)]  # 5600 bytes, across a page edge

    def writer() -> None:
        for i, chunk in enumerate(chunks):
            assert f.pwrite(chunk, i * 700) == 700

    def flusher() -> None:
        for _ in range(8):
            f.mapping.writeback(0, ALL)

    def remover() -> None:
        for _ in range(2):
            f.mapping.remove_contig(0, ALL)

    for task in (writer, flusher, remover):
        machine.spawn(task)
    machine.run()
    assert_quiet(machine)
    # Eviction, not fsync: a page left clean but not fully written would be
    # dropped here and its bytes lost.
    f.mapping.remove_contig(0, ALL)
    assert f.mapping.nr_pages == 0
    assert path.read_bytes() == b"".join(chunks)


@pytest.mark.parametrize(("kind", "make", "rounds"), KINDS)
def test_write_racing_writeback_loses_nothing(
    tmp_path: Path, kind: str, make: Make, rounds: range
) -> None:
    for seed in rounds:
        write_racing_writeback(make(seed), tmp_path / f"f{seed}")


def truncate_racing_writeback(machine: Machine, path: Path) -> None:
    path.write_bytes(b"a" * 3 * PGSIZE)
    f = machine.open(path, "r+")
    f.pwrite(b"b" * 3 * PGSIZE, 0)  # three dirty pages, host still "a"
    seen: list[bytes] = []

    def truncater() -> None:
        f.truncate(5000)

    def flusher() -> None:
        f.mapping.writeback(0, ALL)
        f.fsync()

    def remover() -> None:
        f.mapping.remove_contig(0, ALL)

    def reader() -> None:
        seen.append(f.pread(PGSIZE, 2 * PGSIZE))
        seen.append(f.pread(200, 4900))

    for task in (truncater, flusher, remover, reader):
        machine.spawn(task)
    machine.run()
    assert_quiet(machine)
    # Before the truncate, after it, or (page 2 re-read past the new end) zeros.
    assert seen[0] in (b"b" * PGSIZE, b"", bytes(PGSIZE)), seen[0][:16]
    assert seen[1] in (b"b" * 200, b"b" * 100), seen[1]
    assert f.size == 5000
    f.fsync()
    assert path.read_bytes() == b"b" * 5000, "old bytes past the new end came back"
    f.truncate(3 * PGSIZE)
    expect = b"b" * 5000 + bytes(3 * PGSIZE - 5000)
    assert f.pread(ALL, 0) == expect
    f.mapping.remove_contig(0, ALL)
    assert f.pread(ALL, 0) == expect
    assert path.read_bytes() == expect


@pytest.mark.parametrize(("kind", "make", "rounds"), KINDS)
def test_truncate_racing_writeback_never_resurrects(
    tmp_path: Path, kind: str, make: Make, rounds: range
) -> None:
    for seed in rounds:
        truncate_racing_writeback(make(seed), tmp_path / f"f{seed}")


def writers_readers_remover(machine: Machine, path: Path) -> None:
    path.write_bytes(b"." * 4 * PGSIZE)
    f = machine.open(path, "r+")
    # Two writers, interleaved stripes of 1000 bytes that share pages.
    stripes = {
        tid: [(off, bytes([97 + tid]) * 1000) for off in range(tid * 1000, 16000, 2000)]
        for tid in (0, 1)
    }
    torn: list[str] = []

    def writer(tid: int) -> None:
        for off, data in stripes[tid]:
            f.pwrite(data, off)

    def reader() -> None:
        for off in range(0, 16000, 1000):
            got = f.pread(1000, off)
            # A stripe is either not written yet or written; never torn
            # within a page, whatever removal does meanwhile.
            pieces = {got[:1], got[-1:]} if off // PGSIZE == (off + 999) // PGSIZE else set()
            if len(pieces) > 1:
                torn.append(f"stripe at {off} read half old, half new")

    def remover() -> None:
        for _ in range(3):
            f.mapping.remove_contig(0, ALL)

    machine.spawn(writer, 0)
    machine.spawn(writer, 1)
    machine.spawn(reader)
    machine.spawn(remover)
    machine.run()
    assert torn == []
    assert_quiet(machine)
    expect = bytearray(b"." * 4 * PGSIZE)
    for tid in (0, 1):
        for off, data in stripes[tid]:
            expect[off : off + len(data)] = data
    assert f.pread(ALL, 0) == expect
    f.fsync()
    assert path.read_bytes() == expect


@pytest.mark.parametrize(("kind", "make", "rounds"), KINDS)
def test_writers_readers_and_a_remover_lose_nothing(
    tmp_path: Path, kind: str, make: Make, rounds: range
) -> None:
    for seed in rounds:
        writers_readers_remover(make(seed), tmp_path / f"f{seed}")


def under_memory_pressure(machine: Machine, path: Path) -> None:
    """More pages than frames: writers only get frames because the flusher
    writes back and evicts, and nothing may be lost on the way."""
    path.write_bytes(b"")
    f = machine.open(path, "r+")
    machine.start_flusher(period=0.001)
    pages = 6

    def writer(tid: int) -> None:
        for i in range(tid, pages, 2):
            f.pwrite(bytes([65 + i]) * PGSIZE, i * PGSIZE)

    machine.spawn(writer, 0)
    machine.spawn(writer, 1)
    machine.run()
    f.fsync()
    assert path.read_bytes() == b"".join(bytes([65 + i]) * PGSIZE for i in range(pages))
    assert machine.check_quiescent() == []


@pytest.mark.parametrize(
    ("kind", "make", "rounds"),
    [
        ("sim", lambda seed: sim(seed, frames=3), range(100)),
        ("threads", lambda seed: threads(frames=3), THREAD_ROUNDS),
    ],
)
def test_writes_under_memory_pressure_lose_nothing(
    tmp_path: Path, kind: str, make: Make, rounds: range
) -> None:
    for seed in rounds:
        under_memory_pressure(make(seed), tmp_path / f"f{seed}")
