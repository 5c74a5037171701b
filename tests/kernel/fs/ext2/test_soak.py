"""The ext2 fault soak: random operations on images of random trees, with
host faults (EIO, ENOSPC, short writes, a pwrite that makes no progress)
and frame exhaustion injected, each run ending with a clean unmount, `e2fsck
-fn` finding nothing, and every file read back by debugfs as the API last
showed it; a file fsync'd and not touched since holds what that fsync
reported durable.

PAGEMAP_EXT2_SOAK sets the number of images (50 here; `make ext2-soak` runs
500).  Each image is its own test case, seeded by its number, so a failure
names the seed that reproduces it: PAGEMAP_EXT2_SOAK_FIRST=<seed>
PAGEMAP_EXT2_SOAK=1 runs that one alone.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pagemap import MAP_SHARED, PGSIZE, PROT_READ, PROT_WRITE, Machine, Page
from pagemap import e2fsprogs as e2
from pagemap.kernel.errors import KernelError, OutOfMemory
from pagemap.kernel.fs.ext2 import Ext2FS
from pagemap.kernel.hostio import FAULT_KINDS, HostFaults
from pagemap.kernel.pagemap import PageMap
from pagemap.kernel.radix import ALL_PAGES
from tests.conftest import CountingOps
from tests.kernel.fs.ext2.util import random_tree

IMAGES = int(os.environ.get("PAGEMAP_EXT2_SOAK", "50"))
FIRST = int(os.environ.get("PAGEMAP_EXT2_SOAK_FIRST", "0"))
OPS = int(os.environ.get("PAGEMAP_EXT2_SOAK_OPS", "40"))
FAULTS = [
    ("read", "eio"),
    ("write", "eio"),
    ("write", "enospc"),
    ("write", "short"),
    ("write", "zero"),
    ("sync", "eio"),
    ("sync", "enospc"),
]


@dataclass
class Model:
    """What the API last showed: every regular file's bytes, the directories,
    and what each fsync reported durable (dropped when the file changes)."""

    files: dict[str, bytearray] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)
    durable: dict[str, bytes] = field(default_factory=dict)
    names: int = 0

    def fresh(self, prefix: str) -> str:
        self.names += 1
        return f"/soak/{prefix}{self.names}"


def host_model(root: Path) -> Model:
    """The tree mke2fs copied in, as the model starts it; files with more
    than one link (a hard link) are left out, so each file the soak changes
    has one name."""
    model = Model(dirs={"/", "/lost+found"})
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        where = "" if rel == "." else "/" + rel
        for d in dirnames:
            model.dirs.add(f"{where}/{d}")
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
                model.files[f"{where}/{name}"] = bytearray(Path(dirpath, name).read_bytes())
    return model


class Pressure:
    """Injected trouble for one operation: host faults on the image, or
    every frame but a few held (no frame for a page, a bitmap, an indirect
    block)."""

    def __init__(self, machine: Machine, faults: HostFaults) -> None:
        self.machine = machine
        self.faults = faults
        self.pm: PageMap | None = None
        self.held: list[Page] = []

    def apply(self, rng: random.Random) -> None:
        roll = rng.random()
        if roll < 0.25:
            kind, effect = rng.choice(FAULTS)
            self.faults.fail(kind, rng.randrange(1, 4), effect)
        elif roll < 0.4:
            self.exhaust(rng.randrange(0, 6))

    def exhaust(self, leave: int) -> None:
        if self.pm is None:
            self.pm = self.machine.page_map(CountingOps())
        with contextlib.suppress(OutOfMemory):
            while True:
                self.held.append(self.pm.load_page(len(self.held)))
        for page in self.held[:leave]:
            self.pm.put_page(page)
        del self.held[:leave]

    def clear(self) -> None:
        for kind in FAULT_KINDS:
            while self.faults.take(kind):
                pass
        if self.pm is not None:
            for page in self.held:
                self.pm.put_page(page)
            self.held.clear()
            self.pm.remove_contig(0, ALL_PAGES)


def read_whole(fs: Ext2FS, path: str) -> bytearray:
    with fs.open(path, "r") as f:
        return bytearray(f.pread(f.size, 0))


class Soak:
    def __init__(self, seed: int, workdir: Path) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.workdir = workdir
        self.image = workdir / "fs.img"
        self.log: list[str] = []

    def build(self) -> Model:
        rng = self.rng
        bs = rng.choice([1024, 2048, 4096])
        src = self.workdir / "src"
        src.mkdir()
        # No file of gigabytes over holes (huge=False): the model holds
        # every file's bytes.  Writes reach the indirect blocks instead.
        random_tree(rng, src, bs, huge=False)
        # Room for the tree (its long directory takes a block an entry with
        # 4 KiB blocks) and its metadata, and not much more: a full
        # filesystem is met too.
        used = sum(
            -(-os.lstat(os.path.join(d, n)).st_size // bs) * bs + bs
            for d, dirs, files in os.walk(src)
            for n in dirs + files
        )
        size = (used * rng.choice([3, 4]) // 2 + (2 << 20)) >> 20 << 20
        e2.mkfs(self.image, size, bs, source=src)
        model = host_model(src)
        shutil.rmtree(src)
        return model

    def run(self) -> None:
        model = self.build()
        rng = self.rng
        memory = rng.choice(["512KiB", "1MiB", "2MiB"])
        machine = Machine(cores=1, memory=memory, executor="threads")
        fs = machine.mount(self.image, "rw")
        fs.mkdir("/soak")
        model.dirs.add("/soak")
        pressure = Pressure(machine, fs.vol.dev.faults)
        ops: list[Callable[[Machine, Ext2FS, Model], list[str]]] = [
            self.op_write,
            self.op_write,
            self.op_write,
            self.op_truncate,
            self.op_create,
            self.op_unlink,
            self.op_rename,
            self.op_mkdir,
            self.op_fsync,
            self.op_fsync,
            self.op_store,
            self.op_sync,
            self.op_evict,
        ]
        for step in range(OPS):
            op = rng.choice(ops)
            pressure.apply(rng)
            touched: list[str] = []
            try:
                touched = op(machine, fs, model)
            except KernelError as exc:
                self.log.append(f"{step}: {op.__name__} failed: {exc}")
                pressure.clear()
                self.resync(fs, model, self.last_paths)
            else:
                self.log.append(f"{step}: {op.__name__} {touched}")
            finally:
                pressure.clear()
            if rng.random() < 0.2:
                self.check_reads(fs, model)
        self.check_reads(fs, model)
        fs.unmount()
        assert machine.check_quiescent() == [], self.context()
        machine.close()
        self.judge(model)

    # -- the operations: each names the paths it may change (last_paths) first -----
    last_paths: list[str]

    def pick_file(self, model: Model) -> str | None:
        if not model.files:
            return None
        return self.rng.choice(sorted(model.files))

    def changed(self, model: Model, path: str) -> None:
        model.durable.pop(path, None)

    def op_write(self, machine: Machine, fs: Ext2FS, model: Model) -> list[str]:
        path = self.pick_file(model)
        if path is None:
            return []
        self.last_paths = [path]
        rng = self.rng
        data = model.files[path]
        bs = fs.vol.geo.block_size
        offset = rng.randrange(0, len(data) + 3 * bs)
        if rng.random() < 0.1:
            offset += rng.randrange(0, 300) * bs  # into an indirect block's reach
        payload = rng.randbytes(rng.choice([1, rng.randrange(1, 3 * bs), rng.randrange(1, 40_000)]))
        with fs.open(path, "r+") as f:
            done = f.pwrite(payload, offset)
        self.changed(model, path)
        if offset > len(data):
            data.extend(bytes(offset - len(data)))
        data[offset : offset + done] = payload[:done]
        return [path]

    def op_truncate(self, machine: Machine, fs: Ext2FS, model: Model) -> list[str]:
        path = self.pick_file(model)
        if path is None:
            return []
        self.last_paths = [path]
        rng = self.rng
        data = model.files[path]
        grown = len(data) + rng.randrange(0, 50_000)
        size = rng.choice([0, rng.randrange(0, len(data) + 1), grown])
        fs.truncate(path, size)
        self.changed(model, path)
        if size < len(data):
            del data[size:]
        else:
            data.extend(bytes(size - len(data)))
        return [path]

    def op_create(self, machine: Machine, fs: Ext2FS, model: Model) -> list[str]:
        path = model.fresh("f")
        self.last_paths = [path]
        payload = self.rng.randbytes(self.rng.randrange(0, 20_000))
        with fs.create(path) as f:
            model.files[path] = bytearray()
            done = f.pwrite(payload, 0)
            model.files[path][:] = payload[:done]
        return [path]

    def op_unlink(self, machine: Machine, fs: Ext2FS, model: Model) -> list[str]:
        path = self.pick_file(model)
        if path is None:
            return []
        self.last_paths = [path]
        fs.unlink(path)
        del model.files[path]
        model.durable.pop(path, None)
        return [path]

    def op_rename(self, machine: Machine, fs: Ext2FS, model: Model) -> list[str]:
        path = self.pick_file(model)
        if path is None:
            return []
        new = model.fresh("r")
        self.last_paths = [path, new]
        fs.rename(path, new)
        model.files[new] = model.files.pop(path)
        if path in model.durable:
            model.durable[new] = model.durable.pop(path)
        return [path, new]

    def op_mkdir(self, machine: Machine, fs: Ext2FS, model: Model) -> list[str]:
        path = model.fresh("d")
        self.last_paths = [path]
        fs.mkdir(path)
        model.dirs.add(path)
        return [path]

    def op_fsync(self, machine: Machine, fs: Ext2FS, model: Model) -> list[str]:
        path = self.pick_file(model)
        if path is None:
            return []
        self.last_paths = [path]
        with fs.open(path, "r+") as f:
            f.fsync()
        model.durable[path] = bytes(model.files[path])
        return [path]

    def op_store(self, machine: Machine, fs: Ext2FS, model: Model) -> list[str]:
        """Stores through a shared mapping: a hole gets its block at writeback."""
        path = self.pick_file(model)
        if path is None or not model.files[path]:
            return []
        self.last_paths = [path]
        data = model.files[path]
        rng = self.rng
        offset = rng.randrange(0, len(data))
        payload = rng.randbytes(min(len(data) - offset, rng.randrange(1, 200)))
        lo = offset // PGSIZE * PGSIZE
        length = offset + len(payload) - lo
        proc = machine.process()
        try:
            with fs.open(path, "r+") as f:
                addr = proc.mmap(length, PROT_READ | PROT_WRITE, MAP_SHARED, f, lo)
                try:
                    proc.store(addr + offset - lo, payload)
                finally:
                    proc.munmap(addr, length)
        finally:
            proc.exit()
        self.changed(model, path)
        data[offset : offset + len(payload)] = payload
        return [path]

    def op_sync(self, machine: Machine, fs: Ext2FS, model: Model) -> list[str]:
        self.last_paths = []
        fs.sync()
        return []

    def op_evict(self, machine: Machine, fs: Ext2FS, model: Model) -> list[str]:
        self.last_paths = []
        for inode in list(fs.inodes.values()):
            inode.mapping.remove_contig(0, ALL_PAGES)
        fs.vol.dev.mapping.remove_contig(0, ALL_PAGES)
        return []

    # -- checks ---------------------------------------------------------------------
    def resync(self, fs: Ext2FS, model: Model, paths: list[str]) -> None:
        """After a failed call (the trouble now gone): what the API shows of
        the paths it may have changed becomes the model; their durability
        claims go (a failed write may have changed what is cached)."""
        for path in paths:
            model.durable.pop(path, None)
            if fs.exists(path):
                if stat.S_ISDIR(fs.lstat(path).mode):
                    model.dirs.add(path)
                    model.files.pop(path, None)
                else:
                    model.files[path] = read_whole(fs, path)
            else:
                model.files.pop(path, None)
                model.dirs.discard(path)

    def check_reads(self, fs: Ext2FS, model: Model) -> None:
        for path in sorted(model.files)[:: max(1, len(model.files) // 8)]:
            assert read_whole(fs, path) == model.files[path], self.context(path)

    def judge(self, model: Model) -> None:
        result = e2.fsck(self.image)
        assert result.clean, self.context(result.output)
        out = self.workdir / "out"
        out.mkdir()
        paths = sorted(model.files)
        cmds = self.workdir / "cmds"
        cmds.write_text("".join(f'dump "{p}" "{out}/{i}"\n' for i, p in enumerate(paths)))
        subprocess.run(
            [e2.tool("debugfs"), "-f", str(cmds), str(self.image)],
            capture_output=True,
            check=True,
        )
        for i, path in enumerate(paths):
            got = (out / str(i)).read_bytes()
            assert got == model.files[path], self.context(f"{path}: debugfs reads other bytes")
            if path in model.durable:
                assert got == model.durable[path], self.context(f"{path}: durable bytes lost")
        listed = {e.name for e in e2.ls(self.image, "/soak")} - {".", ".."}
        want = {p.rsplit("/", 1)[1] for p in [*model.files, *model.dirs] if p.startswith("/soak/")}
        assert listed == want, self.context("/soak holds other names")

    def context(self, what: str = "") -> str:
        return f"seed {self.seed}: {what}\n" + "\n".join(self.log[-15:])


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pagemap-soak-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("seed", range(FIRST, FIRST + IMAGES))
def test_ext2_fault_soak(seed: int) -> None:
    with workdir() as wd:
        Soak(seed, wd).run()
