"""Corrupt images: bytes flipped in metadata blocks, over many seeds, give
clean errors (a KernelError carrying an errno) and never anything else; the
files whose metadata was not touched read back equal, through the driver and,
after it unmounted the image, through debugfs.  Truncated images, a directory
loop, and unsupported features are refused cleanly too."""

from __future__ import annotations

import errno
import functools
import os
import random
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from pagemap import Machine
from pagemap import e2fsprogs as e2
from pagemap.kernel.errors import KernelError
from pagemap.kernel.fs.ext2 import Ext2FS
from pagemap.kernel.radix import RADIX_MAX_INDEX

BS = 1024
SEEDS = range(160)


@dataclass(frozen=True)
class Base:
    image: bytes
    files: dict[str, bytes]  # path -> contents
    deps: dict[str, frozenset[int]]  # path -> every metadata block reading it uses
    blocks: dict[str, list[int]]  # kind of metadata -> its blocks


def _debugfs(image: str, cmd: str) -> str:
    return e2.debugfs(image, cmd).decode()


def _inode_block(image: str, path: str) -> int:
    m = re.search(r"located at block (\d+)", _debugfs(image, f"imap {path}"))
    assert m is not None
    return int(m.group(1))


def _indirect(image: str, path: str) -> list[int]:
    return [
        int(b) for b in re.findall(r"\((?:IND|DIND|TIND)\):(\d+)", _debugfs(image, f"stat {path}"))
    ]


@functools.cache
def base() -> Base:
    rng = random.Random(5)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        files: dict[str, bytes] = {}
        for path, size in [
            ("/a", 10),
            ("/b", 3000),
            ("/d0/f0", 700),
            ("/d0/f1", 40 * BS),
            ("/d0/d1/big", 300 * BS),
            ("/d0/d1/small", 5),
            ("/d2/x", 2 * BS),
        ] + [(f"/long/entry-{i:03d}-{'n' * 30}", i) for i in range(80)]:
            files[path] = rng.randbytes(size)
            host = src / path.lstrip("/")
            host.parent.mkdir(parents=True, exist_ok=True)
            host.write_bytes(files[path])
        image = os.path.join(tmp, "fs.img")
        e2.mkfs(image, 4 << 20, BS, source=src, extra=("-g", "1024"))
        dirs = {"/", "/d0", "/d0/d1", "/d2", "/long"}
        dir_blocks = {
            d: [int(b) for b in _debugfs(image, f"blocks {d}").split()] + _indirect(image, d)
            for d in dirs
        }
        inode_blk = {p: _inode_block(image, p) for p in list(files) + sorted(dirs)}
        deps: dict[str, frozenset[int]] = {}
        for path in files:
            need = {inode_blk[path], *_indirect(image, path)}
            parts = path.split("/")[1:-1]
            for i in range(len(parts) + 1):
                d = "/" + "/".join(parts[:i])
                need |= {inode_blk[d], *dir_blocks[d]}
            deps[path] = frozenset(need)
        stats = _debugfs(image, "stats")
        groups = re.findall(
            r"block bitmap at (\d+), inode bitmap at (\d+), inode table at (\d+)", stats
        )
        blocks = {
            "superblock": [1],
            "descriptors": [2],
            "bitmaps": [int(b) for g in groups for b in g[:2]],
            "inode tables": sorted(set(inode_blk.values())),
            "directories": sorted({b for bl in dir_blocks.values() for b in bl}),
            "indirect": sorted({b for p in files for b in _indirect(image, p)}),
        }
        with open(image, "rb") as f:
            return Base(f.read(), files, deps, blocks)


def _clean(exc: BaseException) -> None:
    assert isinstance(exc, KernelError), f"an internal exception: {exc!r}"
    assert exc.errno, f"a kernel error without an errno: {exc!r}"
    assert exc.strerror, f"a kernel error without a message: {exc!r}"


def _evict(machine: Machine) -> None:
    """What the flusher would do between reads, once memory runs low: drop
    every unused page."""
    if machine.allocator.nr_free > 200:
        return
    for pm in machine.page_maps:
        if pm.nr_pages:
            pm.remove_contig(0, RADIX_MAX_INDEX + 1)


def _read_all(machine: Machine, fs: Ext2FS, files: dict[str, bytes], trusted: set[str]) -> None:
    """Read every file (any kernel error is fine for the untrusted), and walk
    the tree a few levels down, listing and stat'ing everything."""
    for path, want in files.items():
        _evict(machine)
        try:
            got = _read_capped(fs, path)
        except Exception as exc:
            _clean(exc)
            assert path not in trusted, f"{path} was unharmed but reading it failed: {exc}"
            continue
        if path in trusted:
            assert got == want, f"{path} was unharmed but reads back different"
    _evict(machine)
    _walk(fs, "/", 0)
    _evict(machine)


def _read_capped(fs: Ext2FS, path: str) -> bytes:
    """A file's first MiB: a corrupt i_size may claim terabytes."""
    with fs.open(path) as f:
        return f.pread(min(f.size, 1 << 20), 0)


def _walk(fs: Ext2FS, path: str, depth: int) -> None:
    if depth > 4:
        return
    try:
        names = fs.listdir(path)
    except Exception as exc:
        _clean(exc)
        return
    for name in names[:20]:
        child = path.rstrip("/") + "/" + name
        try:
            st = fs.lstat(child)
            if st.mode & 0o170000 == 0o040000:
                _walk(fs, child, depth + 1)
            elif st.mode & 0o170000 == 0o120000:
                fs.readlink(child)
            else:
                _read_capped(fs, child)
        except Exception as exc:
            _clean(exc)


def _corrupt(seed: int) -> tuple[bytes, str, int]:
    b = base()
    rng = random.Random(f"corrupt:{seed}")
    kind = rng.choice(sorted(b.blocks))
    blk = rng.choice(b.blocks[kind])
    image = bytearray(b.image)
    for _ in range(rng.randrange(1, 9)):
        if kind == "superblock":
            off = rng.randrange(0, 256)  # where the fields that matter are
        elif kind == "descriptors":
            off = rng.randrange(0, 4 * 32)
        else:
            off = rng.randrange(BS)
        image[blk * BS + off] = rng.randrange(256)
    return bytes(image), kind, blk


@pytest.mark.parametrize("chunk", range(4))
def test_flipped_metadata_gives_clean_errors_and_spares_other_files(chunk: int) -> None:
    b = base()
    tmp = tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    try:
        for seed in SEEDS[chunk::4]:
            data, kind, blk = _corrupt(seed)
            image = os.path.join(tmp, "fs.img")
            with open(image, "wb") as f:
                f.write(data)
            if kind in ("superblock", "descriptors"):
                trusted: set[str] = set()  # a changed geometry can misplace everything
            else:
                trusted = {p for p, deps in b.deps.items() if blk not in deps}
            machine = Machine(cores=1, memory="2MiB")
            try:
                fs = machine.mount(image, "rw")
            except Exception as exc:
                _clean(exc)
                assert os.path.getsize(image) == len(data)
                continue
            try:
                _read_all(machine, fs, b.files, trusted)
            finally:
                fs.unmount()
            assert machine.check_quiescent() == []
            assert os.path.getsize(image) == len(data), "a write outside the image"
            _debugfs_agrees(image, tmp, b.files, trusted, seed)
            _change_things(image, seed)
            assert os.path.getsize(image) == len(data), "a write outside the image"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _change_things(image: str, seed: int) -> None:
    """Mount the corrupt image again and change it: every call either works
    or fails cleanly (what it may do to a tree whose bitmaps lie is not
    judged: Linux's ext2 would trust them too)."""
    rng = random.Random(f"change:{seed}")
    machine = Machine(cores=1, memory="2MiB")
    try:
        fs = machine.mount(image, "rw")
    except Exception as exc:
        _clean(exc)
        return
    paths = sorted(base().files)
    calls = [
        lambda: fs.unlink(rng.choice(paths)),
        lambda: fs.truncate(rng.choice(paths), rng.randrange(0, 5000)),
        lambda: fs.write_file(f"/new{rng.randrange(3)}", os.urandom(rng.randrange(1, 20_000))),
        lambda: fs.rename(rng.choice(paths), f"/d0/moved{rng.randrange(3)}"),
        lambda: fs.mkdir(f"/d0/d1/sub{rng.randrange(3)}"),
        lambda: fs.rmdir(rng.choice(["/d2", "/long", "/d0/d1"])),
        lambda: fs.symlink("x" * rng.randrange(1, 200), f"/link{rng.randrange(3)}"),
        lambda: fs.link(rng.choice(paths), f"/hard{rng.randrange(3)}"),
    ]
    for _ in range(6):
        try:
            rng.choice(calls)()
        except Exception as exc:
            _clean(exc)
    try:
        fs.unmount()
    except Exception as exc:
        _clean(exc)


def _debugfs_agrees(
    image: str, tmp: str, files: dict[str, bytes], trusted: set[str], seed: int
) -> None:
    """debugfs, in one run, dumps every unharmed file; each must be intact.
    (Only those: a corrupt inode may claim a size of terabytes.)"""
    if not trusted:
        return
    out = os.path.join(tmp, f"dump{seed}")
    os.mkdir(out)
    order = sorted(trusted)
    script = os.path.join(tmp, "requests")
    with open(script, "w") as f:
        for i, path in enumerate(order):
            f.write(f'dump "{path}" {out}/{i}\n')
    subprocess.run([e2.tool("debugfs"), "-f", script, image], capture_output=True, check=False)
    for i, path in enumerate(order):
        with open(f"{out}/{i}", "rb") as f:
            assert f.read() == files[path], f"{path} was harmed on disk (seed {seed})"
    shutil.rmtree(out)


@pytest.mark.parametrize("cut", [0, 100, 1024, 2047, 2048, 3000, 4096, 100_000, -1024, -1])
def test_a_truncated_image_is_refused_cleanly(tmp_path: Path, cut: int) -> None:
    data = base().image
    image = tmp_path / "fs.img"
    image.write_bytes(data[:cut])
    with pytest.raises(KernelError) as info:
        Machine(cores=1, memory="1MiB").mount(image, "r")
    assert info.value.errno in (errno.EUCLEAN, errno.EIO), info.value


def test_a_directory_loop_is_corruption_not_a_hang(tmp_path: Path) -> None:
    """/d0/d1's ".." is made to name d1 itself: moving /d0 under d1 must
    walk up from d1 to see whether d0 is above it, and that walk never ends."""
    image = tmp_path / "fs.img"
    image.write_bytes(base().image)
    first = int(_debugfs(str(image), "blocks /d0/d1").split()[0])
    ino = int(_debugfs(str(image), "stat /d0/d1").split()[1])
    with open(image, "r+b") as f:
        f.seek(first * BS + 12)  # the ".." entry follows "." (12 bytes)
        f.write(ino.to_bytes(4, "little"))
    machine = Machine(cores=1, memory="1MiB")
    fs = machine.mount(image, "rw")
    with pytest.raises(KernelError) as info:
        fs.rename("/d0", "/d0/d1/moved")
    assert info.value.errno == errno.EUCLEAN and "loop" in str(info.value)
    assert fs.read_file("/d0/d1/small") == base().files["/d0/d1/small"]
    fs.unmount()
    assert machine.check_quiescent() == []


@pytest.mark.parametrize(
    ("offset", "value", "mode", "words"),
    [
        (96, 0x40 | 0x2, "r", "extent"),  # incompat: extents
        (96, 0x4 | 0x2, "r", "needs_recovery"),
        (100, 0x1 | 0x2 | 0x400, "rw", "metadata_csum"),  # ro_compat, for writing
        (92, 0x4 | 0x38, "rw", "has_journal"),
        (56, 0x1234, "r", "magic"),
        (24, 3, "r", "larger than a page"),  # 8 KiB blocks
    ],
)
def test_features_and_fields_not_handled_are_named(
    tmp_path: Path, offset: int, value: int, mode: str, words: str
) -> None:
    image = tmp_path / "fs.img"
    data = bytearray(base().image)
    size = 2 if offset == 56 else 4
    data[1024 + offset : 1024 + offset + size] = value.to_bytes(size, "little")
    image.write_bytes(bytes(data))
    with pytest.raises(KernelError) as info:
        Machine(cores=1, memory="1MiB").mount(image, mode)
    assert words in str(info.value)
    assert info.value.errno in (errno.EINVAL, errno.EUCLEAN)


def test_ro_compat_features_can_still_be_read(tmp_path: Path) -> None:
    image = tmp_path / "fs.img"
    data = bytearray(base().image)
    data[1024 + 100] |= 0x20  # dir_nlink: a read-only mount may ignore it
    image.write_bytes(bytes(data))
    machine = Machine(cores=1, memory="1MiB")
    fs = machine.mount(image, "r")
    assert fs.read_file("/d0/f1") == base().files["/d0/f1"]
    fs.unmount()
