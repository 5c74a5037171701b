"""ext2 calls that fail part way (no space, no frame, a host error) leave the
image as e2fsck wants it: what was allocated is given back, or what was
started is finished later (at the next sync or at unmount).  Each test ends
with a clean unmount, the machine closed, and `e2fsck -fn`."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from pathlib import Path

import pytest

from pagemap import MAP_SHARED, PGSIZE, PROT_READ, PROT_WRITE, Machine, Page
from pagemap import e2fsprogs as e2
from pagemap.kernel.errors import KernelError, OutOfMemory
from pagemap.kernel.fs.ext2 import Ext2FS
from pagemap.kernel.fs.ext2.errors import Corrupt
from pagemap.kernel.pagemap import PageMap
from pagemap.kernel.radix import ALL_PAGES
from tests.conftest import CountingOps


def image_of(tmp_path: Path, size: int = 4 << 20, bs: int = 1024) -> Path:
    image = tmp_path / "fs.img"
    e2.mkfs(image, size, bs)
    return image


def unmount_and_check(image: Path, machine: Machine, fs: Ext2FS) -> None:
    fs.unmount()
    assert machine.check_quiescent() == []
    machine.close()  # a Machine.close after unmount must not write the image either
    result = e2.fsck(image)
    assert result.clean, result.output


def hold_every_frame(machine: Machine, leave: int = 0) -> tuple[PageMap, list[Page]]:
    """Every free frame taken by pages held through a page map of the test's
    own (the pages of none can be reclaimed), but `leave` of them."""
    pm = machine.page_map(CountingOps())
    held: list[Page] = []
    with pytest.raises(OutOfMemory):
        while True:
            held.append(pm.load_page(len(held)))
    for page in held[:leave]:
        pm.put_page(page)
    return pm, held[leave:]


def let_go(pm: PageMap, held: list[Page]) -> None:
    for page in held:
        pm.put_page(page)


def test_mkdir_on_a_full_image_leaves_no_inode_behind(tmp_path: Path) -> None:
    """ENOSPC for the new directory's first block: the inode taken for it is
    given back, and nothing writes it later (a Machine.sync or close once
    the new inode's page map outlived it wrote it back as a directory)."""
    image = image_of(tmp_path, size=1 << 20)
    machine = Machine(cores=1, memory="4MiB")
    fs = machine.mount(image, "rw")
    with fs.create("/big") as f:
        f.pwrite(os.urandom(2 << 20), 0)
    assert fs.statfs().blocks_free == 0
    inodes_free = fs.statfs().files_free
    for name in ("/d", "/e"):
        with pytest.raises(KernelError) as info:
            fs.mkdir(name)
        assert info.value.errno == 28  # ENOSPC
        assert fs.statfs().files_free == inodes_free
    machine.sync()
    unmount_and_check(image, machine, fs)


@pytest.mark.parametrize("bs", [1024, 4096])
@pytest.mark.parametrize(
    ("start", "offset", "length"),
    [(10, 100_000, 20_000), (0, 0, 50_000), (3000, 3000, 9000), (20_000, 300_000, 5000)],
)
def test_a_write_without_frames_leaves_no_block_past_the_end(
    tmp_path: Path, bs: int, start: int, offset: int, length: int
) -> None:
    """A write that allocated some blocks and then found no frame (for a
    page, or for the buffer of a bitmap or an indirect block) gives every
    block past the size back; with a few frames left it fails at each step
    in turn."""
    image = image_of(tmp_path, bs=bs)
    for leave in range(6):
        machine = Machine(cores=1, memory="1MiB", executor="sim", seed=0)
        fs = machine.mount(image, "rw")
        name = f"/f{leave}"
        with fs.create(name) as f:
            f.pwrite(b"a" * start, 0)
            size = f.size
            pm, held = hold_every_frame(machine, leave)
            try:
                f.pwrite(os.urandom(length), offset)
            except OutOfMemory:
                assert f.size == size
            let_go(pm, held)
        unmount_and_check(image, machine, fs)


@pytest.mark.parametrize("keep", [0, 1000, 13 * 1024 + 5, 300 * 1024])
def test_a_shrinking_truncate_that_fails_part_way_leaks_nothing(tmp_path: Path, keep: int) -> None:
    """A truncate whose indirect blocks and bitmaps must be read with no
    frame to read them into: the size is cut (as on Linux, where freeing
    cannot fail a truncate), the map is left whole, and the next sync or
    the unmount frees the blocks; i_blocks and the bitmaps then agree."""
    image = image_of(tmp_path)
    for leave in range(4):
        machine = Machine(cores=1, memory="1MiB", executor="sim", seed=0)
        fs = machine.mount(image, "rw")
        name = f"/f{leave}"
        with fs.create(name) as f:
            data = os.urandom(20_000)
            f.pwrite(data, 0)
            f.pwrite(data, 400_000)
            fs.sync()
            # Nothing cached: every indirect block and bitmap must be read.
            f.mapping.remove_contig(0, ALL_PAGES)
            fs.vol.dev.mapping.remove_contig(0, ALL_PAGES)
            pm, held = hold_every_frame(machine, leave)
            # No frame even for the new last page: OutOfMemory, nothing changed.
            with contextlib.suppress(OutOfMemory):
                f.truncate(keep)
            let_go(pm, held)
            if f.size == keep:
                assert f.pread(len(data), 0) == data[:keep]
        unmount_and_check(image, machine, fs)


def test_a_sync_finishes_a_truncate_that_could_not_free(tmp_path: Path) -> None:
    image = image_of(tmp_path)
    machine = Machine(cores=1, memory="1MiB", executor="sim", seed=0)
    fs = machine.mount(image, "rw")
    with fs.create("/f") as f:
        f.pwrite(os.urandom(20_000), 400_000)
        fs.sync()
        blocks = fs.stat("/f").blocks
        fs.vol.dev.mapping.remove_contig(0, ALL_PAGES)
        pm, held = hold_every_frame(machine, 0)
        f.truncate(0)
        let_go(pm, held)
        assert f.size == 0 and fs.stat("/f").blocks == blocks
        fs.sync()
        assert fs.stat("/f").blocks == 0
    unmount_and_check(image, machine, fs)


def _store_into_holes_then_press(machine: Machine, fs: Ext2FS) -> None:
    """Pages stored into holes of a sparse file through a shared mapping,
    the device's cache emptied (so writing them back must read a bitmap and
    an indirect block into new frames), then reads that need every frame."""
    with fs.create("/data") as g:
        g.pwrite(os.urandom(200 * 1024), 0)
    fs.sync()
    with fs.create("/sparse") as f:
        f.truncate(64 * PGSIZE)
        p = machine.process()
        addr = p.mmap(64 * PGSIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0)
        for i in range(0, 64, 4):
            p.store(addr + i * PGSIZE + 5, b"x")
        fs.vol.dev.mapping.remove_contig(0, ALL_PAGES)
        with fs.open("/data", "r") as g:
            for _ in range(3):
                for off in range(0, 200 * 1024, PGSIZE):
                    g.pread(10, off)
        p.munmap(addr, 64 * PGSIZE)
        p.exit()


def test_direct_reclaim_writing_back_into_a_hole_never_waits_on_itself_sim(
    tmp_path: Path,
) -> None:
    """Reclaim writes back a page stored into a hole; allocating the hole's
    block needs a bitmap's buffer, so a frame, so reclaim again, in the task
    that holds reclaim's mutex: it must not wait for itself (the sim called
    that a deadlock)."""
    image = image_of(tmp_path)
    machine = Machine(cores=1, memory=24 * PGSIZE, executor="sim", seed=1)
    fs = machine.mount(image, "rw")
    machine.spawn(_store_into_holes_then_press, machine, fs)
    machine.run()
    assert machine.reclaim.mutex.count == 1
    unmount_and_check(image, machine, fs)
    assert e2.cat(image, "/sparse")[4 * PGSIZE + 5] == ord("x")


def test_direct_reclaim_writing_back_into_a_hole_never_waits_on_itself_threads(
    tmp_path: Path,
) -> None:
    image = image_of(tmp_path)
    machine = Machine(cores=1, memory=24 * PGSIZE, executor="threads")
    fs = machine.mount(image, "rw")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            _store_into_holes_then_press(machine, fs)
        except BaseException as exc:  # reported below
            errors.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "direct reclaim waits on the mutex its own caller holds"
    assert errors == []
    unmount_and_check(image, machine, fs)
    data = e2.cat(image, "/sparse")
    assert all(data[i * PGSIZE + 5] == ord("x") for i in range(0, 64, 4))


def test_a_second_machine_cannot_mount_an_image_read_write(tmp_path: Path) -> None:
    """Two Machines writing one image would each trust their own cached
    bitmaps and overwrite the other's: the second is refused with EBUSY, as
    Linux refuses a second exclusive open of a block device, until the first
    unmounts (or its machine closes)."""
    image = image_of(tmp_path)
    one, two = Machine(cores=1, memory="2MiB"), Machine(cores=1, memory="2MiB")
    fs = one.mount(image, "rw")
    with pytest.raises(KernelError) as info:
        two.mount(image, "rw")
    assert info.value.errno == errno.EBUSY
    assert "already mounted read-write" in str(info.value)
    fs.create("/a").close()
    fs.unmount()
    other = two.mount(image, "rw")  # the lock went with the unmount
    other.create("/b").close()
    with pytest.raises(KernelError) as info:
        one.mount(image, "rw")
    assert info.value.errno == errno.EBUSY
    two.close()  # closing the machine lets go too
    again = one.mount(image, "rw")
    assert sorted(again.listdir("/")) == ["a", "b", "lost+found"]
    again.unmount()
    one.close()
    result = e2.fsck(image)
    assert result.clean, result.output


def test_a_failed_mount_leaves_the_image_unlocked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = image_of(tmp_path)
    machine = Machine(cores=1, memory="2MiB")

    def bad_root(self: Ext2FS, ino: int) -> object:
        raise Corrupt(f"inode {ino}: made bad by the test")

    with monkeypatch.context() as patch:
        patch.setattr(Ext2FS, "iget", bad_root)  # fails after the image was locked
        with pytest.raises(Corrupt):
            machine.mount(image, "rw")
    other = Machine(cores=1, memory="2MiB")
    other.mount(image, "rw").unmount()
    other.close()
    machine.close()


def test_an_inode_whose_table_block_cannot_be_read_stays_dirty(tmp_path: Path) -> None:
    """write_inode that cannot get its inode-table buffer (a read error, no
    frame) leaves the inode dirty, so the next sync writes it; once it
    forgot it, the new blocks of its map were never written down (found by
    the fault soak)."""
    image = image_of(tmp_path)
    machine = Machine(cores=1, memory="2MiB")
    fs = machine.mount(image, "rw")
    with fs.create("/f") as f:
        f.pwrite(os.urandom(30_000), 0)
        inode = f.inode
        fs.vol.dev.mapping.remove_contig(0, ALL_PAGES)
        fs.vol.dev.faults.fail("read", 1)
        with pytest.raises(KernelError) as info:
            inode.write_inode()
        assert info.value.errno == errno.EIO
        assert inode.dirty
    unmount_and_check(image, machine, fs)
    assert len(e2.cat(image, "/f")) == 30_000


def test_reclaim_starved_by_its_own_writeback_ends() -> None:
    """Every frame but a few is held, and the dirty pages need frames to be
    written back (an indirect block, a bitmap): reclaim frees a frame, its
    own writeback takes it and wants another.  That is no progress for the
    allocation that asked, which must end in ENOMEM instead of asking again
    for ever.  Seed 363 of the fault soak met it; it is run here alone."""
    from tests.kernel.fs.ext2.test_soak import Soak, workdir

    errors: list[BaseException] = []

    def run() -> None:
        try:
            with workdir() as wd:
                Soak(363, wd).run()
        except BaseException as exc:  # reported below
            errors.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(120)
    assert not worker.is_alive(), "direct reclaim retries for ever on frames its own writeback took"
    assert errors == []
