"""The ext2 calls one by one: full filesystems, read-only mounts, names,
links, symlinks, orphans, mappings, the features mke2fs turns on, and what
e2fsck and debugfs make of the image afterwards."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import pytest

from pagemap import MAP_SHARED, PGSIZE, PROT_READ, PROT_WRITE, Machine
from pagemap import e2fsprogs as e2
from pagemap.kernel.errors import KernelError
from pagemap.kernel.fs.ext2 import Ext2FS
from pagemap.kernel.fs.ext2.errors import NoSpace
from pagemap.kernel.radix import RADIX_MAX_INDEX


def fresh(
    tmp_path: Path,
    size: int = 4 << 20,
    bs: int = 1024,
    extra: tuple[str, ...] = (),
    dirty_tracking: str | None = None,
) -> tuple[Path, Machine, Ext2FS]:
    image = tmp_path / "fs.img"
    e2.mkfs(image, size, bs, extra=extra)
    machine = Machine(cores=2, memory="4MiB", dirty_tracking=dirty_tracking)
    return image, machine, machine.mount(image, "rw")


def done(image: Path, machine: Machine, fs: Ext2FS) -> None:
    """Unmount; nothing may be left held, and e2fsck must find it clean."""
    fs.unmount()
    assert machine.check_quiescent() == []
    result = e2.fsck(image)
    assert result.clean, result.output


def errno_of(fn: object, *args: object) -> int:
    assert callable(fn)
    with pytest.raises(KernelError) as info:
        fn(*args)
    assert info.value.strerror  # a sentence, not just a number
    return info.value.errno or 0


def dumpe2fs_field(image: Path, field: str) -> int:
    out = e2.debugfs(image, "stats").decode()
    m = re.search(rf"^{field}:\s+(\d+)", out, flags=re.M)
    assert m is not None, field
    return int(m.group(1))


# -- full filesystems ---------------------------------------------------------------------


def test_a_full_filesystem_gives_a_short_write_then_enospc(tmp_path: Path) -> None:
    image, machine, fs = fresh(tmp_path, size=1 << 20)
    free = fs.statfs().blocks_free
    data = os.urandom(2 << 20)
    with fs.create("/big") as f:
        n = f.pwrite(data, 0)
        assert 0 < n < len(data)
        assert f.size == n
        assert errno_of(f.pwrite, b"more", n) == errno.ENOSPC
        assert f.size == n  # nothing half-written
        f.fsync()
    assert fs.statfs().blocks_free == 0
    assert errno_of(fs.mkdir, "/d") == errno.ENOSPC
    # Blocks went to data and to the indirect blocks that map it.
    assert free * 1024 > n > (free - 20) * 1024
    done(image, machine, fs)
    assert e2.cat(image, "/big") == data[:n]


def test_running_out_of_inodes_is_enospc(tmp_path: Path) -> None:
    image, machine, fs = fresh(tmp_path, size=1 << 20, extra=("-N", "32"))
    made = 0
    with pytest.raises(NoSpace):
        for i in range(1000):
            fs.create(f"/f{i}").close()
            made += 1
    assert fs.statfs().files_free == 0
    assert errno_of(fs.symlink, "x" * 100, "/sl") == errno.ENOSPC
    assert errno_of(fs.mkdir, "/d") == errno.ENOSPC
    assert len(fs.listdir("/")) == made + 1  # lost+found
    done(image, machine, fs)


def test_a_directory_that_cannot_grow_refuses_the_name(tmp_path: Path) -> None:
    """A new entry needs a new directory block and none is free: ENOSPC, and
    the inode allocated for it is given back."""
    image, machine, fs = fresh(tmp_path, size=1 << 20)
    with fs.create("/fill") as f:
        while True:
            try:
                f.pwrite(b"x" * 65536, f.size)
            except NoSpace:
                break
    inodes = fs.statfs().files_free
    names = 0
    with pytest.raises(NoSpace):
        for i in range(10_000):
            fs.create(f"/{'n' * 200}{i}").close()
            names += 1
    assert names > 0
    assert fs.statfs().files_free == inodes - names
    done(image, machine, fs)


def test_a_store_into_a_hole_on_a_full_filesystem_fails_its_writeback(tmp_path: Path) -> None:
    """Under D-bit tracking a page stored into through a mapping over a hole
    is allocated at writeback; with no block free that writeback is ENOSPC
    and the page stays dirty, so nothing is lost once space is freed.  (Under
    "wp" the store itself fails: tests/kernel/fs/ext2/test_mkwrite.py.)"""
    image, machine, fs = fresh(tmp_path, size=1 << 20, dirty_tracking="dbit")
    holey = fs.create("/holey")
    holey.truncate(4 * PGSIZE)
    with fs.create("/fill") as f:
        while True:
            try:
                f.pwrite(b"x" * 65536, f.size)
            except NoSpace:
                break
    proc = machine.process()
    addr = proc.mmap(4 * PGSIZE, PROT_READ | PROT_WRITE, MAP_SHARED, holey, 0)
    proc.store(addr + PGSIZE + 5, b"kept")
    assert errno_of(holey.fsync) == errno.ENOSPC
    fs.unlink("/fill")
    holey.fsync()
    proc.exit()
    holey.close()
    done(image, machine, fs)
    data = e2.cat(image, "/holey")
    assert data[PGSIZE + 5 : PGSIZE + 9] == b"kept" and len(data) == 4 * PGSIZE


# -- read-only and busy ----------------------------------------------------------------------


def test_a_read_only_mount_refuses_every_change(tmp_path: Path) -> None:
    image, machine, fs = fresh(tmp_path)
    fs.write_file("/a", b"hello")
    fs.mkdir("/d")
    fs.unmount()
    before = image.read_bytes()
    fs = machine.mount(image, "r")
    for call, args in [
        (fs.create, ("/b",)),
        (fs.mkdir, ("/e",)),
        (fs.rmdir, ("/d",)),
        (fs.unlink, ("/a",)),
        (fs.rename, ("/a", "/b")),
        (fs.link, ("/a", "/b")),
        (fs.symlink, ("a", "/s")),
        (fs.truncate, ("/a", 0)),
        (fs.open, ("/a", "r+")),
        (fs.open, ("/new", "w")),
    ]:
        assert errno_of(call, *args) == errno.EROFS, call
    assert fs.read_file("/a") == b"hello"
    fs.sync()
    fs.unmount()
    assert image.read_bytes() == before


def test_mount_twice_and_unmount_busy(tmp_path: Path) -> None:
    image, machine, fs = fresh(tmp_path)
    assert errno_of(machine.mount, image) == errno.EBUSY
    f = fs.create("/a")
    assert errno_of(fs.unmount) == errno.EBUSY
    f.close()
    proc = machine.process()
    f = fs.open("/a", "r+")
    f.truncate(PGSIZE)
    proc.mmap(PGSIZE, PROT_READ, MAP_SHARED, f, 0)
    f.close()
    assert errno_of(fs.unmount) == errno.EBUSY  # still mapped
    proc.exit()
    done(image, machine, fs)
    assert errno_of(fs.listdir, "/") == errno.EIO  # unmounted
    machine.mount(image, "r").unmount()  # the device is free again


def test_a_host_read_only_image_mounts_read_only_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image, _, fs = fresh(tmp_path)
    fs.write_file("/a", b"kept")
    fs.unmount()

    def read_only(path: str, want_write: bool, create: bool) -> tuple[int, bool]:
        return os.open(path, os.O_RDONLY), False  # as the host gives a 0444 file to a user

    monkeypatch.setattr("pagemap.kernel.blockdev.open_host", read_only)
    other = Machine(cores=1, memory="1MiB")
    assert errno_of(other.mount, image, "rw") == errno.EROFS
    other = Machine(cores=1, memory="1MiB")
    fs = other.mount(image, "r")
    assert fs.read_file("/a") == b"kept"
    fs.unmount()


# -- names and paths ----------------------------------------------------------------------------


def test_linux_errors_for_names_and_paths(tmp_path: Path) -> None:
    image, machine, fs = fresh(tmp_path)
    fs.write_file("/file", b"x")
    fs.mkdir("/dir")
    fs.write_file("/dir/inner", b"y")
    assert errno_of(fs.create, "/" + "n" * 256) == errno.ENAMETOOLONG
    fs.create("/" + "n" * 255).close()
    assert errno_of(fs.create, "/file/x") == errno.ENOTDIR  # a '/' after a file's name
    assert errno_of(fs.open, "/file/") == errno.ENOTDIR
    assert errno_of(fs.create, "/new/") == errno.EISDIR
    assert errno_of(fs.create, "/a\0b") == errno.EINVAL
    assert errno_of(fs.open, "/nothing") == errno.ENOENT
    assert errno_of(fs.create, "/file") == errno.EEXIST
    assert errno_of(fs.mkdir, "/dir") == errno.EEXIST
    assert errno_of(fs.open, "/dir") == errno.EISDIR
    assert errno_of(fs.unlink, "/dir") == errno.EISDIR
    assert errno_of(fs.rmdir, "/file") == errno.ENOTDIR
    assert errno_of(fs.rmdir, "/dir") == errno.ENOTEMPTY
    assert errno_of(fs.rename, "/dir", "/dir/inside") == errno.EINVAL
    assert errno_of(fs.rename, "/dir", "/file") == errno.ENOTDIR
    assert errno_of(fs.rename, "/file", "/dir") == errno.EISDIR
    assert errno_of(fs.rename, "/dir/inner", "/dir") == errno.ENOTEMPTY
    assert errno_of(fs.link, "/dir", "/dirlink") == errno.EPERM
    assert errno_of(fs.readlink, "/file") == errno.EINVAL
    assert errno_of(fs.rmdir, "/dir/.") == errno.EINVAL
    assert errno_of(fs.rename, "/dir/.", "/x") == errno.EBUSY
    fs.symlink("loop2", "/loop1")
    fs.symlink("loop1", "/loop2")
    assert errno_of(fs.open, "/loop1") == errno.ELOOP
    done(image, machine, fs)


def test_links_symlinks_and_renames_keep_counts_e2fsck_checks(tmp_path: Path) -> None:
    image, machine, fs = fresh(tmp_path)
    fs.mkdir("/a")
    fs.mkdir("/a/b")
    fs.mkdir("/c")
    fs.write_file("/a/b/f", b"data")
    fs.link("/a/b/f", "/c/g")
    assert fs.stat("/c/g").nlink == 2
    fs.rename("/a/b", "/c/b")  # a directory changes parent: ".." and both counts
    assert fs.stat("/a").nlink == 2 and fs.stat("/c").nlink == 3
    fs.mkdir("/c/victim")
    fs.rename("/c/b", "/c/victim")  # over an empty directory
    assert fs.stat("/c").nlink == 3
    fs.symlink("/c/victim/f", "/abs")
    fs.symlink("../c/g", "/a/rel")
    fs.symlink("s" * 300, "/slow")
    assert fs.read_file("/abs") == b"data" and fs.read_file("/a/rel") == b"data"
    assert fs.readlink("/slow") == "s" * 300
    fs.write_file("/abs", b"through a symlink")
    assert fs.read_file("/c/g") == b"through a symlink"
    fs.symlink("created", "/dangling")
    fs.write_file("/dangling", b"made at the target")
    assert fs.read_file("/created") == b"made at the target"
    fs.unlink("/c/g")
    assert fs.stat("/c/victim/f").nlink == 1
    done(image, machine, fs)
    assert b"Fast link dest" in e2.debugfs(image, "stat /abs")
    assert e2.cat(image, "/c/victim/f") == b"through a symlink"


def test_an_unlinked_open_file_lives_until_its_last_close(tmp_path: Path) -> None:
    image, machine, fs = fresh(tmp_path)
    free = fs.statfs().blocks_free
    f = fs.create("/tmp")
    f.pwrite(os.urandom(50_000), 0)
    fs.unlink("/tmp")
    assert fs.statfs().blocks_free < free
    assert len(f.pread(50_000, 0)) == 50_000
    f.close()
    assert fs.statfs().blocks_free == free
    g = fs.create("/kept-open")
    g.pwrite(b"x" * 5000, 0)
    fs.unlink("/kept-open")
    g.close()
    done(image, machine, fs)


def test_a_call_in_progress_keeps_an_unlinked_file_until_it_returns(tmp_path: Path) -> None:
    """The last close of an unlinked file that a call is still using (a pwrite
    let in just before a racing close) frees the inode when that call puts its
    reference, not under it: before, the pwrite allocated blocks for an inode
    the close had freed, and they leaked (ext2-close-unlinked)."""
    image, machine, fs = fresh(tmp_path)
    free = fs.statfs().blocks_free
    f = fs.create("/tmp")
    f.pwrite(b"x" * 3000, 0)
    ino = f.inode.ino
    fs.unlink("/tmp")
    f._get("pwrite")  # a call in progress, as pwrite holds it
    f.close()
    assert ino in fs.inodes and not f.inode.deleted  # the call still has it
    assert f.inode.write(b"y" * 5000, 3000) == 5000  # and may still grow it
    with pytest.raises(KernelError) as info:
        f.pwrite(b"z", 0)  # a call that begins after close returned
    assert info.value.errno == errno.EBADF
    f._put()  # the call returns: the last reference, the last close
    assert f.inode.deleted and ino not in fs.inodes
    assert fs.statfs().blocks_free == free
    done(image, machine, fs)


def test_an_unlinked_mapped_file_is_freed_at_unmount(tmp_path: Path) -> None:
    image, machine, fs = fresh(tmp_path)
    free = fs.statfs().blocks_free
    f = fs.create("/m")
    f.pwrite(b"y" * (3 * PGSIZE), 0)
    proc = machine.process()
    addr = proc.mmap(3 * PGSIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0)
    f.close()
    fs.unlink("/m")
    proc.store(addr + PGSIZE, b"still mapped")
    assert proc.load(addr + PGSIZE, 12) == b"still mapped"
    proc.exit()
    fs.unmount()
    assert machine.check_quiescent() == []
    assert e2.fsck(image).clean
    fs = machine.mount(image, "r")
    assert fs.statfs().blocks_free == free
    fs.unmount()


# -- data paths ------------------------------------------------------------------------------------


def test_mapped_stores_reach_the_image_and_survive_eviction(tmp_path: Path) -> None:
    image, machine, fs = fresh(tmp_path, bs=2048)
    f = fs.create("/mapped")
    f.truncate(5 * PGSIZE + 100)  # holes, and a partial last page
    proc = machine.process()
    addr = proc.mmap(6 * PGSIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0)
    for i in range(6):
        proc.store(addr + i * PGSIZE + 50, f"page {i}".encode())
    for pm in machine.page_maps:
        pm.remove_contig(0, RADIX_MAX_INDEX + 1)  # written back, then dropped
    assert f.pread(6, 3 * PGSIZE + 50) == b"page 3"
    assert proc.load(addr + 5 * PGSIZE + 50, 6) == b"page 5"
    proc.exit()
    f.close()
    done(image, machine, fs)
    data = e2.cat(image, "/mapped")
    assert len(data) == 5 * PGSIZE + 100
    for i in range(6):
        assert data[i * PGSIZE + 50 : i * PGSIZE + 56] == f"page {i}".encode()


def test_a_hole_stays_a_hole_when_written_back_as_zeros(tmp_path: Path) -> None:
    image, machine, fs = fresh(tmp_path)
    with fs.create("/sparse") as f:
        f.truncate(64 * 1024)
        f.pwrite(b"end", 64 * 1024 - 3)
        f.fsync()
        assert f.inode.bmap.lookup(0) == 0 and f.inode.bmap.lookup(63) != 0
    done(image, machine, fs)


@pytest.mark.parametrize("bs", [1024, 4096])
def test_triple_indirect_writes_and_truncate_free_every_block(tmp_path: Path, bs: int) -> None:
    image, machine, fs = fresh(tmp_path, size=8 << 20, bs=bs)
    free = fs.statfs().blocks_free
    apb = bs // 4
    far = (12 + apb + apb * apb + 5) * bs  # inside the triple indirect range
    with fs.create("/far") as f:
        f.pwrite(b"near", 10)
        f.pwrite(b"mid", (12 + apb + 3) * bs)
        f.pwrite(b"far away", far)
        f.fsync()
        # three data blocks; a double indirect block and its single one for
        # "mid"; a triple, a double and a single for "far away"
        assert fs.statfs().blocks_free == free - 3 - 2 - 3
    fs.unmount()
    assert e2.fsck(image).clean
    # Where debugfs says the far block is, the bytes are (cat would stream GiBs of zeros).
    blk = int(e2.debugfs(image, f"bmap /far {far // bs}").decode())
    with open(image, "rb") as img:
        img.seek(blk * bs + far % bs)
        assert img.read(8) == b"far away"
    fs = machine.mount(image)
    fs.truncate("/far", 20)
    assert fs.read_file("/far") == bytes(10) + b"near" + bytes(6)
    assert fs.statfs().blocks_free == free - 1
    fs.truncate("/far", 0)
    assert fs.statfs().blocks_free == free
    done(image, machine, fs)


def test_growing_past_a_shrunk_end_reads_zeros(tmp_path: Path) -> None:
    """Truncate to the middle of a block, then grow: the old bytes past the
    cut must never come back, cached or not."""
    image, machine, fs = fresh(tmp_path)
    with fs.create("/f") as f:
        f.pwrite(b"\xff" * 3000, 0)
        f.fsync()
        f.truncate(1000)
        for pm in machine.page_maps:
            pm.remove_contig(0, RADIX_MAX_INDEX + 1)
        f.truncate(3000)
        assert f.pread(3000, 0) == b"\xff" * 1000 + bytes(2000)
        f.truncate(500)
        f.pwrite(b"z", 2500)  # a write past the end grows it too
        assert f.pread(3000, 0) == b"\xff" * 500 + bytes(2000) + b"z"
    done(image, machine, fs)
    assert e2.cat(image, "/f") == b"\xff" * 500 + bytes(2000) + b"z"


def test_reads_and_writes_with_a_position(tmp_path: Path) -> None:
    image, machine, fs = fresh(tmp_path)
    with fs.open("/p", "w+") as f:
        assert f.write(b"hello ") == 6 and f.write(b"world") == 5
        f.seek(0)
        assert f.read(5) == b"hello" and f.read() == b" world" and f.tell() == 11
    done(image, machine, fs)


# -- features -------------------------------------------------------------------------------


def test_changing_an_indexed_directory_clears_its_index(tmp_path: Path) -> None:
    image = tmp_path / "fs.img"
    src = tmp_path / "src"
    (src / "big").mkdir(parents=True)
    for i in range(400):
        (src / "big" / f"file-with-a-long-name-{i:04d}").write_bytes(b"x")
    e2.mkfs(image, 8 << 20, 1024, source=src)
    e2fsck = e2.tool("e2fsck")
    os.system(f"{e2fsck} -fyD {image} > /dev/null 2>&1")  # builds the htree index
    assert b"Flags: 0x1000" in e2.debugfs(image, "stat /big")
    machine = Machine(cores=1, memory="2MiB")
    fs = machine.mount(image)
    assert len(fs.listdir("/big")) == 400  # the index blocks read as empty entries
    fs.write_file("/big/one-more", b"y")
    fs.unlink("/big/file-with-a-long-name-0007")
    done(image, machine, fs)
    assert b"Flags: 0x0" in e2.debugfs(image, "stat /big")


def test_backup_superblocks_and_descriptors_agree_after_changes(tmp_path: Path) -> None:
    image, machine, fs = fresh(tmp_path, size=6 << 20, extra=("-g", "1024"))
    for i in range(20):
        fs.write_file(f"/f{i}", os.urandom(20_000))
    fs.mkdir("/d")
    fs.unlink("/f3")
    done(image, machine, fs)
    # e2fsck reading the backups in group 1 (and 3, 5, ...) finds the same counts.
    e2fsck = e2.tool("e2fsck")
    for backup in (1025, 3073):
        code = os.system(f"{e2fsck} -fn -b {backup} -B 1024 {image} > /dev/null 2>&1")
        assert code == 0, backup


def test_a_large_file_turns_on_large_file(tmp_path: Path) -> None:
    image, machine, fs = fresh(tmp_path, bs=4096, extra=("-O", "^large_file"))
    with fs.create("/huge") as f:
        f.pwrite(b"past two gigabytes", 3 << 30)
    done(image, machine, fs)
    assert b"large_file" in e2.debugfs(image, "features")


def test_statfs_agrees_with_debugfs(tmp_path: Path) -> None:
    image, machine, fs = fresh(tmp_path, bs=2048)
    fs.write_file("/a", os.urandom(100_000))
    fs.mkdir("/d")
    st = fs.statfs()
    done(image, machine, fs)
    assert st.blocks_free == dumpe2fs_field(image, "Free blocks")
    assert st.files_free == dumpe2fs_field(image, "Free inodes")
    assert st.block_size == 2048 and st.name_max == 255


def test_the_readme_ext2_example_runs(tmp_path: Path) -> None:
    readme = Path(__file__).resolve().parents[4] / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.S)
    (code,) = [b for b in blocks if "m.mount(" in b]
    code = code.replace("/tmp/fs.img", str(tmp_path / "fs.img"))
    exec(compile(code, "README.md", "exec"), {})
    assert e2.cat(tmp_path / "fs.img", "/docs/hello.txt") == b"hello, ext2"


def test_closing_the_machine_writes_a_mounted_filesystem_back_whole(tmp_path: Path) -> None:
    """Machine.close with an ext2 image still mounted and a file mapped: the
    file's pages, stores through the mapping, and the metadata they dirty all
    reach the image, which e2fsck finds clean."""
    image = tmp_path / "fs.img"
    e2.mkfs(image, 1 << 20, block_size=1024)
    with Machine(cores=1, memory="256KiB") as m:
        fs = m.mount(image, "rw")
        f = fs.create("/grown")
        f.pwrite(b"w" * 5000, 0)  # allocates blocks: file data and metadata dirty
        p = m.process()
        addr = p.mmap(PGSIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0)
        p.store(addr, b"mapped")  # only the PTE's dirty bit knows of it
    assert e2.fsck(image).clean
    with Machine(cores=1, memory="256KiB") as m:
        fs = m.mount(image, "r")
        assert fs.read_file("/grown") == b"mapped" + b"w" * 4994
        fs.unmount()
