"""Helpers for the ext2 tests: random source trees for mke2fs -d, and
comparing what the driver reads with what the host holds."""

from __future__ import annotations

import os
import random
import stat
from dataclasses import dataclass, field
from pathlib import Path

from pagemap import Machine
from pagemap.kernel.fs.ext2 import Ext2FS

SAMPLE = 64 * 1024  # bytes read around each written extent of a huge sparse file


@dataclass
class SparseFile:
    """A file written as extents over holes; `size` may be far past the data."""

    path: str
    size: int
    extents: list[tuple[int, int]] = field(default_factory=list)


def depth_offsets(bs: int) -> list[int]:
    """A file offset inside each part of the block map: direct, single,
    double and triple indirect."""
    apb = bs // 4
    starts = [0, 12, 12 + apb, 12 + apb + apb * apb]
    return [s * bs + bs // 3 for s in starts]


def random_tree(rng: random.Random, root: Path, bs: int, huge: bool = True) -> list[SparseFile]:
    """Fill `root` with a random tree: nested directories, small and medium
    files, files with holes, one extent in every indirection depth (if
    `huge`), a long directory, fast and slow symlinks, a hard link.  Returns
    the sparse files (their extents say which bytes matter)."""
    sparse: list[SparseFile] = []
    dirs = [root]
    for i in range(rng.randrange(2, 6)):
        d = rng.choice(dirs) / f"dir{i}"
        d.mkdir()
        dirs.append(d)
    for i in range(rng.randrange(4, 12)):
        d = rng.choice(dirs)
        size = rng.choice([0, 1, bs - 1, bs, bs + 1, rng.randrange(1, 3000), rng.randrange(1, 40)])
        (d / f"small{i}").write_bytes(rng.randbytes(size))
    for i in range(rng.randrange(1, 3)):
        size = rng.randrange(12 * bs, (12 + bs // 4 + 40) * bs)
        (rng.choice(dirs) / f"medium{i}").write_bytes(rng.randbytes(size))
    for i in range(rng.randrange(1, 4)):
        path = rng.choice(dirs) / f"holes{i}"
        f = SparseFile(str(path), 0)
        with open(path, "wb") as out:
            pos = rng.randrange(0, 3 * bs)
            for _ in range(rng.randrange(1, 5)):
                n = rng.randrange(1, 2 * bs)
                out.seek(pos)
                out.write(rng.randbytes(n))
                f.extents.append((pos, n))
                pos += n + rng.randrange(bs, 40 * bs)
            out.truncate(pos)
            f.size = pos
        sparse.append(f)
    if huge:
        path = rng.choice(dirs) / "deep"
        f = SparseFile(str(path), 0)
        with open(path, "wb") as out:
            for off in depth_offsets(bs):
                n = rng.randrange(1, bs + 10)
                out.seek(off)
                out.write(rng.randbytes(n))
                f.extents.append((off, n))
            f.size = out.tell() + rng.randrange(0, bs)
            out.truncate(f.size)
        sparse.append(f)
    long_dir = rng.choice(dirs) / "long"
    long_dir.mkdir()
    for i in range(rng.randrange(60, 200)):
        name = f"entry-{i:04d}-" + "n" * rng.randrange(0, 60)
        (long_dir / name).write_bytes(rng.randbytes(rng.randrange(0, 50)))
    os.symlink("small0", rng.choice(dirs) / "fastlink")
    os.symlink("t" * rng.randrange(60, min(bs - 1, 300)), rng.choice(dirs) / "slowlink")
    first = next(p for p in root.rglob("small*"))
    os.link(first, first.parent / "hardlink")
    return sparse


def compare(fs: Ext2FS, root: Path, sparse: list[SparseFile]) -> int:
    """Assert the filesystem holds exactly the host tree under `root`; the
    number of entries compared."""
    by_path = {os.path.relpath(f.path, root): f for f in sparse}
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        where = "/" if rel == "." else "/" + rel
        names = sorted(dirnames + filenames)
        got = sorted(n for n in fs.listdir(where) if not (where == "/" and n == "lost+found"))
        assert got == names, f"{where}: {got} != {names}"
        for name in names:
            host = os.path.join(dirpath, name)
            inside = (where.rstrip("/") + "/" + name) if where != "/" else "/" + name
            st = os.lstat(host)
            mine = fs.lstat(inside)
            assert stat.S_IFMT(mine.mode) == stat.S_IFMT(st.st_mode), inside
            assert mine.mode & 0o7777 == st.st_mode & 0o7777, inside
            if not stat.S_ISDIR(st.st_mode):
                assert mine.size == st.st_size, f"{inside}: {mine.size} != {st.st_size}"
            if stat.S_ISLNK(st.st_mode):
                assert fs.readlink(inside) == os.readlink(host), inside
            elif stat.S_ISREG(st.st_mode):
                _compare_file(fs, inside, host, by_path.get(os.path.relpath(host, root)))
            count += 1
    return count


def _compare_file(fs: Ext2FS, inside: str, host: str, sparse: SparseFile | None) -> None:
    with fs.open(inside, "r") as f, open(host, "rb") as h:
        if sparse is None or sparse.size <= 4 << 20:
            assert f.pread(f.size + 10, 0) == h.read(), inside
            return
        # A huge sparse file: every extent with the holes around it, and its end.
        for off, n in sparse.extents:
            lo = max(0, off - SAMPLE)
            h.seek(lo)
            assert f.pread(n + 2 * SAMPLE, lo) == h.read(n + 2 * SAMPLE), f"{inside} @ {off}"
        h.seek(sparse.size - SAMPLE)
        assert f.pread(2 * SAMPLE, sparse.size - SAMPLE) == h.read(), f"{inside}: its end"


def mounted(image: Path | str, mode: str = "rw", memory: str = "8MiB") -> tuple[Machine, Ext2FS]:
    machine = Machine(cores=2, memory=memory)
    return machine, machine.mount(image, mode)
