"""ext2 under the SimExecutor, over many seeds: allocation racing truncate,
and stores through a mapping racing removal.  After every schedule the image
is unmounted, e2fsck must find it clean, and the files must hold what the
model says."""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pagemap import MAP_SHARED, PGSIZE, PROT_READ, PROT_WRITE, Machine
from pagemap import e2fsprogs as e2
from pagemap.kernel.fs.ext2 import Ext2FS

SEEDS = range(200)
BS = 1024
CHUNK = 1500  # crosses block boundaries: every append allocates
INITIAL = 1000


@functools.cache
def base_image() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        (src / "a").write_bytes(b"A" * INITIAL)
        (src / "b").write_bytes(b"B" * INITIAL)
        (src / "m").write_bytes(b"M" * 100)
        image = Path(tmp) / "fs.img"
        e2.mkfs(image, 1 << 20, BS, source=src)
        return image.read_bytes()


@pytest.fixture
def scratch() -> Iterator[str]:
    where = "/dev/shm" if os.path.isdir("/dev/shm") else None
    folder = tempfile.mkdtemp(prefix="pagemap-ext2-race-", dir=where)
    yield os.path.join(folder, "fs.img")
    shutil.rmtree(folder)


def sim_mount(image: str, seed: int) -> tuple[Machine, Ext2FS]:
    with open(image, "wb") as f:
        f.write(base_image())
    machine = Machine(cores=3, memory=65 * PGSIZE, executor="sim", seed=seed, max_steps=2_000_000)
    return machine, machine.mount(image, "rw")


def chunk(tag: int, i: int) -> bytes:
    return bytes([tag + i]) * CHUNK


def candidates(truncate_to: int, rounds: int) -> list[bytes]:
    """/b for every place the truncate can fall among its appends (each call
    holds the inode's lock, so they happen one at a time, in some order)."""
    out = []
    for cut in range(rounds + 1):
        data = bytearray(b"B" * INITIAL)
        for i in range(rounds):
            if i == cut:
                data = data[:truncate_to]
            off = INITIAL + i * CHUNK
            if len(data) < off:
                data += bytes(off - len(data))
            data[off : off + CHUNK] = chunk(0x60, i)
        if cut == rounds:
            data = data[:truncate_to]
        out.append(bytes(data))
    return out


@pytest.mark.parametrize("truncate_to", [0, 1700])
def test_appenders_in_one_group_racing_truncate(scratch: str, truncate_to: int) -> None:
    rounds = 3
    want_a = b"A" * INITIAL + b"".join(chunk(0x40, i) for i in range(rounds))
    want_b = candidates(truncate_to, rounds)
    for seed in SEEDS:
        machine, fs = sim_mount(scratch, seed)
        fa, fb = fs.open("/a", "r+"), fs.open("/b", "r+")

        def append(f: object, tag: int) -> None:
            for i in range(rounds):
                f.pwrite(chunk(tag, i), INITIAL + i * CHUNK)  # type: ignore[attr-defined]

        machine.spawn(append, fa, 0x40, name="append-a")
        machine.spawn(append, fb, 0x60, name="append-b")
        machine.spawn(fb.truncate, truncate_to, name="truncate-b")
        machine.run()
        assert fs.check_quiescent() == []
        fa.close()
        fb.close()
        fs.unmount()
        assert machine.check_quiescent() == [], seed
        result = e2.fsck(scratch)
        assert result.clean, f"seed {seed}: {result.output}"
        check = Machine(cores=1, memory="1MiB").mount(scratch, "r")
        assert check.read_file("/a") == want_a, seed
        assert check.read_file("/b") in want_b, seed
        check.unmount()


def test_stores_through_a_mapping_racing_removal(scratch: str) -> None:
    """Page 0 is on disk; page 1 is a hole until the store: removal's
    writeback allocates its block.  Every store must survive, whatever the
    interleaving of stores, shootdowns, writeback and the allocation."""
    for seed in SEEDS:
        machine, fs = sim_mount(scratch, seed)
        f = fs.open("/m", "r+")
        f.truncate(2 * PGSIZE)
        proc = machine.process()
        addr = proc.mmap(2 * PGSIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0)
        proc.store(addr + 8, b"before!!")  # page 0 mapped and dirty before the race
        latest: dict[int, bytes] = {8: b"before!!"}

        def storer() -> None:
            for r in range(2):
                for off in (16, PGSIZE + 24):
                    data = f"r{r}@{off:05d}".encode()[:8]
                    proc.store(addr + off, data)
                    latest[off] = data
                    assert proc.load(addr + off, 8) == data

        def remover() -> None:
            f.mapping.remove_contig(0, 2)

        machine.spawn(storer, name="store")
        machine.spawn(remover, name="remove")
        machine.run()
        proc.exit()
        f.close()
        fs.unmount()
        assert machine.check_quiescent() == [], seed
        result = e2.fsck(scratch)
        assert result.clean, f"seed {seed}: {result.output}"
        check = Machine(cores=1, memory="1MiB").mount(scratch, "r")
        data = check.read_file("/m")
        check.unmount()
        assert len(data) == 2 * PGSIZE
        assert data[:8] == b"M" * 8
        for off, want in latest.items():
            assert data[off : off + 8] == want, f"seed {seed}: offset {off}"
