"""Calls mixed across two machines: no host file ever changes except through
its own machine.

Two machines each own a host file, a disk image and a process.  Hypothesis
draws a sequence of calls, each naming the machine it is made on and the
machine whose object it is handed (a file to mmap, a page to put_page, a
buffer to dirty_buffer or put_buffer).  A call handed another machine's
object must be refused (WrongMachine) with nothing changed on either; the
others run, and a shadow of each host file follows what they write.  After
every call, the host files of the machine not called are unchanged, and in
the end, once both machines sync, every host file equals its shadow and the
accounting of both is clean.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pagemap import (
    MAP_SHARED,
    PGSIZE,
    PROT_READ,
    PROT_WRITE,
    BlockDevice,
    HostFile,
    Machine,
    Proc,
    WrongMachine,
)
from pagemap.kernel.radix import ALL_PAGES

RW = PROT_READ | PROT_WRITE
PAGES = 3
BLOCKS = 8


@dataclass
class Side:
    """One machine and what it owns, with shadows of its host files."""

    machine: Machine
    file: HostFile
    dev: BlockDevice
    proc: Proc
    data: Path
    image: Path
    shadow: bytearray
    image_shadow: bytearray

    def host_now(self) -> dict[Path, bytes]:
        return {p: p.read_bytes() for p in (self.data, self.image)}


def make_side(tmp: Path, name: str, seed: int) -> Side:
    data, image = tmp / f"{name}.bin", tmp / f"{name}.img"
    data.write_bytes(name.encode() * (PAGES * PGSIZE))
    image.write_bytes(name.encode() * (BLOCKS * 512))
    m = Machine(cores=1, memory=10 * PGSIZE, executor="sim", seed=seed)
    return Side(
        m,
        m.open(data, "r+"),
        m.blockdev(image),
        m.process(),
        data,
        image,
        bytearray(data.read_bytes()),
        bytearray(image.read_bytes()),
    )


def pwrite(sides: list[Side], on: int, of: int, offset: int, data: bytes) -> None:
    s = sides[on]
    s.file.pwrite(data, offset)
    end = offset + len(data)
    if end > len(s.shadow):
        s.shadow.extend(bytes(end - len(s.shadow)))
    s.shadow[offset:end] = data


def mmap_store(sides: list[Side], on: int, of: int, offset: int, data: bytes) -> None:
    proc, file = sides[on].proc, sides[of].file
    page = min(offset // PGSIZE, PAGES - 1)
    if on != of:
        refused(lambda: proc.mmap(PGSIZE, RW, MAP_SHARED, file, page * PGSIZE))
        return
    va = proc.mmap(PGSIZE, RW, MAP_SHARED, file, page * PGSIZE)
    at = offset % PGSIZE
    chunk = data[: PGSIZE - at]
    proc.store(va + at, chunk)
    assert proc.load(va + at, len(chunk)) == chunk
    proc.munmap(va, PGSIZE)
    sides[of].shadow[page * PGSIZE + at : page * PGSIZE + at + len(chunk)] = chunk


def put_page(sides: list[Side], on: int, of: int, offset: int, data: bytes) -> None:
    mine, theirs = sides[on].file.mapping, sides[of].file.mapping
    page = theirs.load_page(offset // PGSIZE)
    if on != of:
        refused(lambda: mine.put_page(page))
    theirs.put_page(page)


def buffer(sides: list[Side], on: int, of: int, offset: int, data: bytes) -> None:
    dev, theirs = sides[on].dev, sides[of].dev
    blk = offset % BLOCKS
    bh = theirs.get_buffer(blk, 512)
    if on != of:
        refused(lambda: dev.dirty_buffer(bh))
        refused(lambda: dev.put_buffer(bh))
        theirs.put_buffer(bh)
        return
    bh.data[: len(data)] = data[:512]
    dev.dirty_buffer(bh)
    dev.put_buffer(bh)
    chunk = data[:512]
    sides[of].image_shadow[blk * 512 : blk * 512 + len(chunk)] = chunk


def sync(sides: list[Side], on: int, of: int, offset: int, data: bytes) -> None:
    sides[on].file.fsync()
    sides[on].dev.sync()


def evict(sides: list[Side], on: int, of: int, offset: int, data: bytes) -> None:
    sides[on].file.mapping.remove_contig(0, ALL_PAGES)
    sides[on].dev.mapping.remove_contig(0, ALL_PAGES)


def refused(call: Callable[[], object]) -> None:
    try:
        call()
    except WrongMachine:
        return
    raise AssertionError("another machine's object was accepted")


Call = Callable[[list[Side], int, int, int, bytes], None]
Step = tuple[Call, int, int, int, bytes]
CALLS: list[Call] = [pwrite, mmap_store, put_page, buffer, sync, evict]

steps = st.lists(
    st.tuples(
        st.sampled_from(CALLS),
        st.integers(0, 1),  # the machine called
        st.integers(0, 1),  # the machine whose object it is handed
        st.integers(0, PAGES * PGSIZE - 1),
        st.binary(min_size=1, max_size=64),
    ),
    max_size=25,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=steps)
def test_no_host_file_changes_but_through_its_own_machine(
    tmp_path: Path, steps: list[Step]
) -> None:
    for old in tmp_path.iterdir():
        old.unlink()
    sides = [make_side(tmp_path, "a", 1), make_side(tmp_path, "b", 2)]
    for call, on, of, offset, data in steps:
        untouched = sides[1 - on]
        before = untouched.host_now()
        call(sides, on, of, offset, data)
        assert untouched.host_now() == before, f"{call.__name__} on machine {on} changed the other"
        for s in sides:
            assert s.machine.check_quiescent() == []
    for s in sides:
        s.machine.close()
        assert s.data.read_bytes() == bytes(s.shadow)
        assert s.image.read_bytes() == bytes(s.image_shadow)
        assert s.machine.check_quiescent() == [] and s.machine.allocator.nr_used == 0
