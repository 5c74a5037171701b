"""Truncate while a page past the new end is held through the public PageMap
API: as Linux drops such a page from the cache whatever its count, the page
leaves the map at once (truncate does not wait for the holder), stays
readable by its holder, and its frame is freed at the last put."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from pagemap import MAP_SHARED, PGSIZE, PROT_READ, PROT_WRITE, BusError, Machine
from pagemap import e2fsprogs as e2
from pagemap.kernel.vfs import File


def finishes(fn: Callable[[], None], seconds: float = 20) -> None:
    """Run fn in a thread; fail (rather than hang the suite) if it spins."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # reported below
            errors.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), "truncate spins while a page past the end is held"
    if errors:
        raise errors[0]


def check_dropped_then_freed(machine: Machine, f: File) -> None:
    pm = f.inode.mapping
    page = pm.load_page(2)
    page.data[:4] = b"held"
    finishes(lambda: f.truncate(PGSIZE))
    assert f.size == PGSIZE
    assert pm.find_page(2) is None and pm.nr_pages <= 2  # it left the map
    assert bytes(page.data[:4]) == b"held"  # still the holder's to read
    assert not machine.allocator.is_free(page.ppn)  # not freed under its holder
    assert f.pread(10, 2 * PGSIZE) == b""
    free = machine.allocator.nr_free
    pm.put_page(page)
    assert machine.allocator.is_free(page.ppn)  # the last put freed it
    assert machine.allocator.nr_free == free + 1
    assert machine.check_quiescent() == []


def test_truncate_with_a_page_held_drops_it_and_frees_it_at_the_last_put(
    tmp_path: Path,
) -> None:
    path = tmp_path / "f"
    path.write_bytes(bytes(4 * PGSIZE))
    machine = Machine(cores=1, memory="1MiB")
    f = machine.open(path, "r+")
    check_dropped_then_freed(machine, f)
    f.close()
    machine.close()
    assert path.stat().st_size == PGSIZE


def test_an_ext2_truncate_with_a_page_held_leaves_a_clean_image(tmp_path: Path) -> None:
    image = tmp_path / "fs.img"
    e2.mkfs(image, 4 << 20, 1024)
    machine = Machine(cores=1, memory="1MiB")
    fs = machine.mount(image, "rw")
    with fs.create("/f") as f:
        f.pwrite(bytes(range(256)) * (16 * PGSIZE // 256), 0)
        check_dropped_then_freed(machine, f)
    fs.unmount()
    machine.close()
    result = e2.fsck(image)
    assert result.clean, result.output
    assert e2.cat(image, "/f") == (bytes(range(256)) * (PGSIZE // 256))


def test_a_held_page_that_is_also_mapped_is_unmapped(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(bytes(4 * PGSIZE))
    machine = Machine(cores=1, memory="1MiB")
    f = machine.open(path, "r+")
    proc = machine.process()
    addr = proc.mmap(4 * PGSIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0)
    proc.store(addr + 2 * PGSIZE, b"mapped")
    page = f.inode.mapping.load_page(2)
    finishes(lambda: f.truncate(PGSIZE))
    with pytest.raises(BusError):
        proc.load(addr + 2 * PGSIZE, 1)
    assert bytes(page.data[:6]) == b"mapped"
    f.inode.mapping.put_page(page)
    proc.munmap(addr, 4 * PGSIZE)
    proc.exit()
    assert machine.check_quiescent() == []
    f.close()
    machine.close()


@pytest.mark.parametrize("seed", range(12))
def test_a_holder_racing_truncate_under_the_sim(tmp_path: Path, seed: int) -> None:
    """A task holds a page past the end across the truncate of another task,
    and puts it at some point of the schedule: the frame is freed once, by
    whoever goes last, and nothing is left held."""
    path = tmp_path / "f"
    path.write_bytes(bytes(4 * PGSIZE))
    machine = Machine(cores=2, memory="256KiB", executor="sim", seed=seed)
    f = machine.open(path, "r+")
    pm = f.inode.mapping
    free = machine.allocator.nr_free

    loaded = machine.executor.semaphore(0, "loaded")

    def holder() -> None:
        page = pm.load_page(3)
        loaded.up()
        for _ in range(seed % 4):
            machine.executor.relax()
        pm.put_page(page)

    def truncator() -> None:
        # Once the page is held: a load_page that lost the race to truncate's
        # invalidate lock would add its page after the drop, past the end.
        loaded.down()
        f.truncate(0)

    machine.spawn(holder)
    machine.spawn(truncator)
    machine.run()
    assert f.size == 0 and pm.nr_pages == 0
    assert machine.allocator.nr_free == free
    assert machine.check_quiescent() == []
    f.close()
    machine.close()
