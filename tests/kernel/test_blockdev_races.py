"""Tasks racing for the blocks of one page read each block from the image
once, and a dirtied buffer reaches the image: under the SimExecutor for every
seed in SIM_SEEDS, and on real threads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pagemap import PGSIZE, BlockDevice, Machine
from tests.conftest import SIM_SEEDS, sim

BLK = 1024
PER_PAGE = PGSIZE // BLK
FRAMES = 4
THREAD_ROUNDS = range(20)
# Blocks each racer asks for: all on page 1 (blocks 4..7), with repeats.
WANTS = [(5, 4), (5, 7), (6, 5), (4, 5)]


def image_bytes(nbytes: int) -> bytes:
    return b"".join((i // 4).to_bytes(4, "little") for i in range(0, nbytes, 4))


def record_reads(dev: BlockDevice) -> list[int]:
    """The offset of every read the device makes of its image from now on."""
    offsets: list[int] = []
    real = dev.io.pread

    def pread(nbytes: int, offset: int) -> bytes:
        offsets.append(offset)
        return real(nbytes, offset)

    dev.io.pread = pread  # type: ignore[method-assign]
    return offsets


def race(machine: Machine, path: Path) -> None:
    image = image_bytes(3 * PGSIZE)
    path.write_bytes(image)
    dev = machine.blockdev(path)
    reads = record_reads(dev)
    bad: list[str] = []

    def racer(tid: int) -> None:
        for blk in WANTS[tid]:
            bh = dev.get_buffer(blk, BLK)
            if tid == 0 and blk == 5:
                # Writer: the others may read block 5 before or after this.
                bh.data[:4] = b"W0W0"
                dev.dirty_buffer(bh)
            else:
                got = bytes(bh.data[4:])
                if got != image[blk * BLK + 4 : (blk + 1) * BLK]:
                    bad.append(f"task {tid} read wrong bytes for block {blk}")
            if bh.blk_num != blk or bh.page.index != 1:
                bad.append(f"task {tid} got {bh!r} for block {blk}")
            dev.put_buffer(bh)

    for tid in range(len(WANTS)):
        machine.spawn(racer, tid)
    machine.run()
    assert bad == []
    assert sorted(reads) == [b * BLK for b in range(PER_PAGE, 2 * PER_PAGE)], (
        "a block was read from the image more than once, or not at all"
    )
    assert machine.check_quiescent() == []
    assert machine.allocator.nr_free + dev.mapping.nr_pages == FRAMES
    dev.sync()
    assert path.read_bytes() == image[: 5 * BLK] + b"W0W0" + image[5 * BLK + 4 :]


def threads() -> Machine:
    return Machine(cores=4, memory=(FRAMES + 1) * PGSIZE, executor="threads")


@pytest.mark.parametrize(
    ("kind", "make", "rounds"),
    [
        ("sim", lambda seed: sim(seed, frames=FRAMES), SIM_SEEDS),
        ("threads", lambda seed: threads(), THREAD_ROUNDS),
    ],
)
def test_racing_get_buffer_reads_each_block_once(
    tmp_path: Path, kind: str, make: Callable[[int], Machine], rounds: range
) -> None:
    for seed in rounds:
        race(make(seed), tmp_path / f"disk{seed}.img")
