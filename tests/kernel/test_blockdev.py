"""Block devices: buffer heads chained on pages, dirty buffers, bad input,
failing host I/O.  Races are in test_blockdev_races.py."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

import pytest

from pagemap import (
    BH_DIRTY,
    PG_BUFFER,
    PG_DIRTY,
    PGSIZE,
    BlockDevice,
    KernelError,
    Machine,
)
from pagemap.kernel.blockdev import page_buffers
from tests.conftest import CountingOps, sim

FRAMES = 8
ALL = 1 << 30


def image_bytes(nbytes: int) -> bytes:
    """Bytes in which every 4-byte word names its own offset."""
    return b"".join((i // 4).to_bytes(4, "little") for i in range(0, nbytes, 4))


def make_image(path: Path, nbytes: int = 4 * PGSIZE) -> Path:
    path.write_bytes(image_bytes(nbytes))
    return path


@pytest.fixture
def machine() -> Machine:
    return sim(0, frames=FRAMES)


@pytest.fixture
def dev(machine: Machine, tmp_path: Path) -> BlockDevice:
    return machine.blockdev(make_image(tmp_path / "disk.img"))


def expect_error(code: int, call: Callable[..., object], *args: object) -> KernelError:
    with pytest.raises(KernelError) as err:
        call(*args)
    assert err.value.errno == code, err.value
    return err.value


def assert_clean(machine: Machine) -> None:
    assert machine.check_quiescent() == []
    cached = sum(pm.nr_pages for pm in machine.page_maps)
    assert machine.allocator.nr_free + cached == FRAMES


def record_writes(dev: BlockDevice) -> list[tuple[int, int]]:
    """(offset, length) of every write the device makes to its image from now on."""
    writes: list[tuple[int, int]] = []
    real = dev.io.pwrite

    def pwrite(data: bytes | bytearray | memoryview, offset: int) -> None:
        writes.append((offset, len(memoryview(data))))
        real(data, offset)

    dev.io.pwrite = pwrite  # type: ignore[method-assign]
    return writes


@pytest.mark.parametrize("blk_size", [512, 1024, 2048, 4096])
def test_a_page_holds_one_buffer_head_per_block(
    machine: Machine, tmp_path: Path, blk_size: int
) -> None:
    path = make_image(tmp_path / "disk.img")
    dev = machine.blockdev(path, sector_size=512)
    image = path.read_bytes()
    per_page = PGSIZE // blk_size
    blk = 2 * per_page - 1  # the second page's last block
    bh = dev.get_buffer(blk, blk_size)
    page = bh.page
    assert page.flags.load() & PG_BUFFER
    chain = list(page_buffers(page))
    assert len(chain) == per_page
    assert [b.blk_num for b in chain] == list(range(per_page, 2 * per_page))
    for b in chain:
        assert b.page is page and b.blk_size == blk_size
        assert bytes(b.data) == image[b.blk_num * blk_size : (b.blk_num + 1) * blk_size]
    assert bh in chain and bh.blk_num == blk
    # Buffers are views of the page's frame, not copies.
    bh.data[:2] = b"!!"
    assert bytes(page.data[(blk % per_page) * blk_size :][:2]) == b"!!"
    dev.put_buffer(bh)
    assert_clean(machine)


def test_the_block_code_not_the_page_map_sets_pg_buffer(machine: Machine, dev: BlockDevice) -> None:
    plain = machine.page_map(CountingOps())
    page = plain.load_page(0)
    assert not page.flags.load() & PG_BUFFER and page.buffers is None
    plain.put_page(page)
    # The device's own page map knows nothing of buffers; its readpage does.
    bh = dev.get_buffer(0, 1024)
    assert bh.page.flags.load() & PG_BUFFER
    dev.put_buffer(bh)


def test_the_image_is_read_once_per_block(machine: Machine, dev: BlockDevice) -> None:
    held = [dev.get_buffer(b, 1024) for b in (0, 1, 2, 3, 1, 0)]
    assert dev.io.nr_reads.load() == 4  # one page, four blocks, each read once
    assert held[0] is held[5] and held[1] is held[4]
    for bh in held:
        dev.put_buffer(bh)
    assert_clean(machine)


def test_dirty_buffer_marks_the_buffer_and_its_page(machine: Machine, dev: BlockDevice) -> None:
    bh = dev.get_buffer(5, 1024)
    other = dev.get_buffer(4, 1024)
    assert not bh.flags.load() & BH_DIRTY and not bh.page.flags.load() & PG_DIRTY
    bh.data[:4] = b"DATA"
    dev.dirty_buffer(bh)
    assert bh.flags.load() & BH_DIRTY
    assert bh.page.flags.load() & PG_DIRTY
    assert not other.flags.load() & BH_DIRTY
    dev.put_buffer(bh)
    dev.put_buffer(other)


def test_writepage_writes_only_the_dirty_buffers(
    machine: Machine, dev: BlockDevice, tmp_path: Path
) -> None:
    image = (tmp_path / "disk.img").read_bytes()
    writes = record_writes(dev)
    dirty = dev.get_buffer(6, 1024)
    clean = dev.get_buffer(7, 1024)
    dirty.data[:] = b"D" * 1024
    # Changed but never dirtied: writeback must leave it alone.
    clean.data[:] = b"C" * 1024
    dev.dirty_buffer(dirty)
    dev.put_buffer(dirty)
    dev.put_buffer(clean)
    dev.sync()
    assert writes == [(6 * 1024, 1024)]
    after = (tmp_path / "disk.img").read_bytes()
    assert after == image[: 6 * 1024] + b"D" * 1024 + image[7 * 1024 :]
    assert not dirty.flags.load() & BH_DIRTY
    dev.sync()
    assert writes == [(6 * 1024, 1024)], "a clean buffer was written again"


def test_removal_writes_back_dirty_buffers_and_their_heads_go_with_the_page(
    machine: Machine, dev: BlockDevice, tmp_path: Path
) -> None:
    bh = dev.get_buffer(2, 512)
    page = bh.page
    bh.data[:] = b"R" * 512
    dev.dirty_buffer(bh)
    dev.put_buffer(bh)
    assert dev.mapping.remove_contig(0, ALL) == 1
    assert page.buffers is None, "the freed frame kept its buffer heads"
    assert machine.allocator.is_free(page.ppn)
    assert (tmp_path / "disk.img").read_bytes()[1024:1536] == b"R" * 512
    reads = dev.io.nr_reads.load()
    again = dev.get_buffer(2, 512)
    assert again is not bh and bytes(again.data) == b"R" * 512
    assert dev.io.nr_reads.load() == reads + PGSIZE // 512
    dev.put_buffer(again)
    assert_clean(machine)


def test_the_last_page_of_a_short_device_has_only_its_blocks(
    machine: Machine, tmp_path: Path
) -> None:
    path = make_image(tmp_path / "small.img", PGSIZE + 3 * 512)
    dev = machine.blockdev(path)
    bh = dev.get_buffer(10, 512)
    assert [b.blk_num for b in page_buffers(bh.page)] == [8, 9, 10]
    assert bytes(bh.page.data[3 * 512 :]) == bytes(PGSIZE - 3 * 512)
    expect_error(errno.EINVAL, dev.get_buffer, 11, 512)
    dev.put_buffer(bh)


def test_the_same_image_is_the_same_device(machine: Machine, tmp_path: Path) -> None:
    path = make_image(tmp_path / "disk.img")
    assert machine.blockdev(path) is machine.blockdev(str(path))
    expect_error(errno.EINVAL, machine.blockdev, path, 1024)


# -- bad input -------------------------------------------------------------------


@pytest.mark.parametrize("blk_size", [0, 256, 768, 1000, 3072, 8192, -512])
def test_block_size_must_be_a_power_of_two_from_512_to_4096(
    machine: Machine, dev: BlockDevice, blk_size: int
) -> None:
    expect_error(errno.EINVAL, dev.get_buffer, 0, blk_size)
    assert dev.blk_size == 0 and dev.mapping.nr_pages == 0
    assert_clean(machine)


def test_block_size_below_the_sector_size_is_refused(machine: Machine, tmp_path: Path) -> None:
    dev = machine.blockdev(make_image(tmp_path / "disk.img"), sector_size=2048)
    expect_error(errno.EINVAL, dev.get_buffer, 0, 1024)
    dev.put_buffer(dev.get_buffer(0, 2048))


@pytest.mark.parametrize("blk_num", [-1, 16, 17, 1 << 40])
def test_block_number_past_the_device(machine: Machine, dev: BlockDevice, blk_num: int) -> None:
    expect_error(errno.EINVAL, dev.get_buffer, blk_num, 1024)  # 16 blocks of 1 KiB
    assert dev.mapping.nr_pages == 0 and dev.io.nr_reads.load() == 0
    assert_clean(machine)


def test_one_block_size_per_device(machine: Machine, dev: BlockDevice) -> None:
    dev.put_buffer(dev.get_buffer(0, 1024))
    expect_error(errno.EINVAL, dev.get_buffer, 0, 2048)
    assert dev.blk_size == 1024


@pytest.mark.parametrize("nbytes", [100, 513, PGSIZE + 1])
def test_image_not_a_whole_number_of_sectors(machine: Machine, tmp_path: Path, nbytes: int) -> None:
    path = tmp_path / "odd.img"
    path.write_bytes(b"x" * nbytes)
    expect_error(errno.EINVAL, machine.blockdev, path)
    assert machine.block_devices.devices == {} and machine.page_maps == []
    assert path.read_bytes() == b"x" * nbytes


def test_bad_sector_size_missing_image_and_directory(machine: Machine, tmp_path: Path) -> None:
    path = make_image(tmp_path / "disk.img")
    for bad in (0, 100, 8192):
        expect_error(errno.EINVAL, machine.blockdev, path, bad)
    expect_error(errno.ENOENT, machine.blockdev, tmp_path / "none.img")
    expect_error(errno.EISDIR, machine.blockdev, tmp_path)
    assert machine.block_devices.devices == {}


def test_a_buffer_of_another_device_is_refused(machine: Machine, tmp_path: Path) -> None:
    a = machine.blockdev(make_image(tmp_path / "a.img"))
    b = machine.blockdev(make_image(tmp_path / "b.img"))
    bh = a.get_buffer(0, 512)
    expect_error(errno.EINVAL, b.dirty_buffer, bh)
    expect_error(errno.EINVAL, b.put_buffer, bh)
    assert not bh.flags.load() & BH_DIRTY
    a.put_buffer(bh)
    assert_clean(machine)


# -- host I/O errors ---------------------------------------------------------------


def test_read_error_is_eio_and_leaves_nothing_behind(machine: Machine, dev: BlockDevice) -> None:
    dev.faults.fail("read", 1)
    expect_error(errno.EIO, dev.get_buffer, 3, 1024)
    assert dev.mapping.nr_pages == 0
    assert_clean(machine)
    bh = dev.get_buffer(3, 1024)
    assert bh.page.buffers is not None
    dev.put_buffer(bh)


def test_failed_writeback_keeps_the_buffers_dirty_and_cached(
    machine: Machine, dev: BlockDevice, tmp_path: Path
) -> None:
    image = (tmp_path / "disk.img").read_bytes()
    first, second = dev.get_buffer(0, 1024), dev.get_buffer(1, 1024)
    for bh in (first, second):
        bh.data[:] = b"N" * 1024
        dev.dirty_buffer(bh)
        dev.put_buffer(bh)
    dev.faults.fail("write", 1)
    expect_error(errno.EIO, dev.sync)
    assert first.flags.load() & BH_DIRTY and second.flags.load() & BH_DIRTY
    assert first.page.flags.load() & PG_DIRTY
    assert (tmp_path / "disk.img").read_bytes() == image
    dev.faults.fail("write", 1)
    expect_error(errno.EIO, dev.mapping.remove_contig, 0, ALL)
    assert dev.mapping.nr_pages == 1 and first.page.flags.load() & PG_DIRTY
    assert_clean(machine)
    dev.sync()
    assert (tmp_path / "disk.img").read_bytes()[:2048] == b"N" * 2048
    assert not first.flags.load() & BH_DIRTY and not second.flags.load() & BH_DIRTY
