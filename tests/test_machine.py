"""A Machine's lifecycle: sync(), close() and `with`.

A Machine used as a context manager leaves no host descriptor open and no
dirty page unwritten, under both executors; close() closes even when its
sync fails, and says so; a Machine dropped without close() loses its dirty
pages (what the README warns of).
"""

from __future__ import annotations

import errno
import gc
import os
from pathlib import Path

import pytest

from pagemap import (
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    MAP_SHARED,
    PG_DIRTY,
    PGSIZE,
    PROT_READ,
    PROT_WRITE,
    AlreadyClosed,
    IOFailure,
    KernelError,
    Machine,
    NoSuchProcess,
)
from pagemap.sync.core import TaskStuck
from tests.conftest import CountingOps

RW = PROT_READ | PROT_WRITE


def open_descriptors(under: Path) -> list[str]:
    """The host files under `under` that this process has open."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the listing's own descriptor, gone already
        if target.startswith(str(under)):
            found.append(target)
    return found


def make_files(tmp: Path) -> tuple[Path, Path]:
    data, image = tmp / "data.bin", tmp / "disk.img"
    data.write_bytes(b"." * (2 * PGSIZE))
    image.write_bytes(bytes(4 * 512))
    return data, image


@pytest.mark.parametrize("executor", ["threads", "sim"])
def test_with_leaves_no_descriptor_open_and_nothing_unwritten(
    tmp_path: Path, executor: str
) -> None:
    data, image = make_files(tmp_path)
    ops = CountingOps()
    with Machine(cores=2, memory=16 * PGSIZE, executor=executor, seed=1) as m:
        f = m.open(data, "r+")
        f.pwrite(b"written", 0)
        p = m.process()
        va = p.mmap(2 * PGSIZE, RW, MAP_SHARED, f)
        anon = p.mmap(PGSIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS)

        def task() -> None:
            p.store(va + PGSIZE + 10, b"stored")  # only the PTE's D bit knows
            p.store(anon, b"private")

        m.spawn(task)
        m.run()
        dev = m.blockdev(image)
        bh = dev.get_buffer(2, 512)
        bh.data[:5] = b"block"
        dev.dirty_buffer(bh)
        dev.put_buffer(bh)
        pm = m.page_map(ops)
        page = pm.load_page(3)
        page.data[:4] = b"bare"
        page.flags.fetch_or(PG_DIRTY)
        pm.put_page(page)
        assert open_descriptors(tmp_path)  # the host files are open while it runs
    assert m.closed
    assert open_descriptors(tmp_path) == []
    host = data.read_bytes()
    assert host[:7] == b"written" and host[PGSIZE + 10 : PGSIZE + 16] == b"stored"
    assert image.read_bytes()[1024:1029] == b"block"
    assert ops.store[3][:4] == b"bare"
    # Closed: everything is given back, and every call says so.
    assert m.check_quiescent() == []
    assert m.allocator.nr_used == 0
    assert all(pm.nr_pages == 0 for pm in m.page_maps)
    for call in (lambda: f.pread(1, 0), lambda: dev.get_buffer(0, 512), lambda: pm.load_page(0)):
        with pytest.raises(AlreadyClosed) as err:
            call()
        assert err.value.errno == errno.EBADF
    with pytest.raises(NoSuchProcess):
        p.load(va, 1)
    with pytest.raises(AlreadyClosed):
        m.open(data)


def test_sync_writes_everything_and_keeps_the_machine_open(tmp_path: Path) -> None:
    data, _ = make_files(tmp_path)
    m = Machine(cores=1, memory=8 * PGSIZE, executor="sim")
    f = m.open(data, "r+")
    p = m.process()
    va = p.mmap(PGSIZE, RW, MAP_SHARED, f)
    p.store(va, b"by store")
    f.pwrite(b"by write", PGSIZE)
    f.close()  # as on Linux, closing a file writes nothing back ...
    assert data.read_bytes()[:8] == b"........"
    m.sync()  # ... and sync writes back every file, closed or not
    host = data.read_bytes()
    assert host[:8] == b"by store" and host[PGSIZE : PGSIZE + 8] == b"by write"
    assert not m.closed and p.load(va, 8) == b"by store"
    m.close()
    assert open_descriptors(tmp_path) == []


def test_a_failed_sync_is_retried_by_sync_and_raised_by_close(tmp_path: Path) -> None:
    data, _ = make_files(tmp_path)
    m = Machine(cores=1, memory=8 * PGSIZE, executor="sim")
    f = m.open(data, "r+")
    f.pwrite(b"first", 0)
    f.faults.fail("write", 1)
    with pytest.raises(IOFailure):
        m.sync()
    assert data.read_bytes()[:5] == b"....."  # kept dirty: a second sync writes it
    m.sync()
    assert data.read_bytes()[:5] == b"first"
    f.pwrite(b"second", 0)
    f.faults.fail("write", 2)  # the sync, and close's last try at eviction
    with pytest.raises(IOFailure):
        m.close()
    assert m.closed and open_descriptors(tmp_path) == []
    assert data.read_bytes()[:6] == b"first."  # lost, as close() warned
    assert m.check_quiescent() == []


def test_close_from_a_task_of_the_machine_is_refused(tmp_path: Path) -> None:
    m = Machine(cores=1, memory=8 * PGSIZE, executor="sim")
    m.spawn(m.close)
    with pytest.raises(KernelError) as err:
        m.run()
    assert err.value.errno == errno.EBUSY and not m.closed
    m.close()


def test_a_machine_dropped_without_close_loses_its_dirty_pages(tmp_path: Path) -> None:
    data, _ = make_files(tmp_path)
    m = Machine(cores=1, memory=8 * PGSIZE, executor="sim")
    m.open(data, "r+").pwrite(b"never written", 0)
    del m
    gc.collect()
    assert data.read_bytes() == b"." * (2 * PGSIZE)
    assert open_descriptors(tmp_path) == []  # the descriptor went with it, at collection


def test_many_machines_closed_hold_no_descriptors(tmp_path: Path) -> None:
    data, _ = make_files(tmp_path)
    gc.disable()  # so nothing but close() can let a descriptor go
    try:
        for i in range(300):
            with Machine(cores=1, memory=4 * PGSIZE, executor="sim") as m:
                m.open(data, "r+").pwrite(i.to_bytes(2, "little"), 0)
            assert open_descriptors(tmp_path) == []
    finally:
        gc.enable()
    assert data.read_bytes()[:2] == (299).to_bytes(2, "little")


def test_a_sim_task_that_never_reaches_a_point_is_reported_not_hung() -> None:
    """A loop with no scheduling point in it (an mprotect that never advances,
    say) would hang the run; the watchdog ends it with the task's stack."""
    m = Machine(cores=1, memory="64KiB", executor="sim", watchdog=0.2)
    spins = [0]

    def spin() -> None:
        while True:
            spins[0] += 1

    m.spawn(spin, name="spinner")
    with pytest.raises(TaskStuck) as caught:
        m.run()
    assert caught.value.task == "spinner"
    assert "test_machine.py" in caught.value.stack and "spin" in caught.value.stack
    assert spins[0] > 0


@pytest.mark.parametrize("bad", [0, -1.0, "5", True])
def test_a_watchdog_that_is_not_a_positive_number_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="watchdog"):
        Machine(cores=1, memory="64KiB", executor="sim", watchdog=bad)  # type: ignore[arg-type]
