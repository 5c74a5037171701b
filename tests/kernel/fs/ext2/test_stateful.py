"""Random sequences of filesystem calls on an ext2 image, against a host
directory as the model (Linux's own answers, errors included).

Each call runs on both; the results, or the errnos, must be equal.  After
each sequence the image is unmounted, `e2fsck -fn` must find it clean, and
debugfs ("cat" for every file, "ls" for every directory) must agree with the
model.  The example count is modest here; `make ext2-soak` runs many more
(PAGEMAP_EXT2_EXAMPLES).
"""

from __future__ import annotations

import errno
import mmap
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from pagemap import MAP_SHARED, PGSIZE, PROT_READ, PROT_WRITE, Machine
from pagemap import e2fsprogs as e2
from pagemap.kernel.errors import KernelError
from pagemap.kernel.fs.ext2 import Ext2FS
from pagemap.kernel.radix import RADIX_MAX_INDEX

EXAMPLES = int(os.environ.get("PAGEMAP_EXT2_EXAMPLES", "12"))
NAMES = ["a", "b", "d", "e", "a", "d", "n" * 255, "x" * 256]
paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join)
targets = st.sampled_from(["a", "b", "d/a", "t" * 80, "nowhere"])
payloads = st.binary(min_size=0, max_size=3000)
offsets = st.integers(min_value=0, max_value=40_000)

Outcome = tuple[str, Any]


def attempt(fn: Callable[[], Any]) -> Outcome:
    try:
        return ("ok", fn())
    except KernelError as exc:
        return ("err", errno.errorcode.get(exc.errno or 0, exc.errno))
    except OSError as exc:
        return ("err", errno.errorcode.get(exc.errno or 0, exc.errno))


class Ext2AgainstHost(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="pagemap-ext2-")
        self.model = os.path.join(self.tmp, "model")
        os.mkdir(self.model)
        self.image = os.path.join(self.tmp, "fs.img")
        self.machine: Machine | None = None
        self.fs: Ext2FS | None = None

    @initialize(bs=st.sampled_from([1024, 2048, 4096]))
    def make(self, bs: int) -> None:
        e2.mkfs(self.image, 4 << 20, bs)
        self.machine = Machine(cores=1, memory="2MiB")
        self.fs = self.machine.mount(self.image, "rw")
        # mke2fs makes lost+found; the model has one too.
        os.mkdir(os.path.join(self.model, "lost+found"), 0o700)

    def host(self, path: str) -> str:
        return os.path.join(self.model, path)

    def tree(self) -> tuple[list[str], list[str]]:
        """(every path in the model, every directory in it, "" for the root)."""
        everything: list[str] = []
        dirs = [""]
        for dirpath, dirnames, filenames in os.walk(self.model):
            rel = os.path.relpath(dirpath, self.model)
            rel = "" if rel == "." else rel + "/"
            everything += [rel + n for n in sorted(dirnames + filenames)]
            dirs += [rel + n for n in sorted(dirnames)]
        return everything, dirs

    def path(self, data: st.DataObject, fresh: bool = False) -> str:
        """A path: mostly one that exists (or, `fresh`, a new name in a
        directory that exists), sometimes any path at all."""
        everything, dirs = self.tree()
        new = st.tuples(st.sampled_from(dirs), st.sampled_from(NAMES)).map(lambda t: t[0] + t[1])
        if fresh or not everything:
            return data.draw(st.one_of(new, new, paths))
        old = st.sampled_from(everything)
        return data.draw(st.one_of(old, old, new, paths))

    @property
    def f(self) -> Ext2FS:
        assert self.fs is not None
        return self.fs

    def same(self, mine: Callable[[], Any], theirs: Callable[[], Any]) -> Outcome:
        got, want = attempt(mine), attempt(theirs)
        assert got == want, f"ext2 gave {got}, Linux gave {want}"
        return got

    # -- the calls -------------------------------------------------------------------
    @rule(data=st.data())
    def create(self, data: st.DataObject) -> None:
        path = self.path(data, fresh=True)

        def host() -> None:
            os.close(os.open(self.host(path), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644))

        self.same(lambda: self.f.create("/" + path).close(), host)

    @rule(data=st.data())
    def mkdir(self, data: st.DataObject) -> None:
        path = self.path(data, fresh=True)
        self.same(lambda: self.f.mkdir("/" + path), lambda: os.mkdir(self.host(path), 0o755))

    @rule(data=st.data(), payload=payloads, offset=offsets)
    def pwrite(self, data: st.DataObject, payload: bytes, offset: int) -> None:
        path = self.path(data)

        def mine() -> int:
            with self.f.open("/" + path, "r+") as f:
                return f.pwrite(payload, offset)

        def host() -> int:
            fd = os.open(self.host(path), os.O_RDWR)
            try:
                return os.pwrite(fd, payload, offset)
            finally:
                os.close(fd)

        self.same(mine, host)

    @rule(data=st.data(), size=offsets)
    def truncate(self, data: st.DataObject, size: int) -> None:
        path = self.path(data)
        self.same(
            lambda: self.f.truncate("/" + path, size), lambda: os.truncate(self.host(path), size)
        )

    @rule(data=st.data())
    def unlink(self, data: st.DataObject) -> None:
        path = self.path(data)
        self.same(lambda: self.f.unlink("/" + path), lambda: os.unlink(self.host(path)))

    @rule(data=st.data())
    def rmdir(self, data: st.DataObject) -> None:
        path = self.path(data)
        self.same(lambda: self.f.rmdir("/" + path), lambda: os.rmdir(self.host(path)))

    @rule(data=st.data())
    def rename(self, data: st.DataObject) -> None:
        old, new = self.path(data), self.path(data, fresh=data.draw(st.booleans()))
        self.same(
            lambda: self.f.rename("/" + old, "/" + new),
            lambda: os.rename(self.host(old), self.host(new)),
        )

    @rule(data=st.data())
    def link(self, data: st.DataObject) -> None:
        old, new = self.path(data), self.path(data, fresh=True)
        self.same(
            lambda: self.f.link("/" + old, "/" + new),
            lambda: os.link(self.host(old), self.host(new), follow_symlinks=False),
        )

    @rule(to=targets, data=st.data())
    def symlink(self, to: str, data: st.DataObject) -> None:
        path = self.path(data, fresh=True)
        self.same(
            lambda: self.f.symlink(to, "/" + path),
            lambda: os.symlink(to, self.host(path)),
        )

    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        path = self.path(data)

        def host() -> bytes:
            with open(self.host(path), "rb") as f:
                return f.read()

        self.same(lambda: self.f.read_file("/" + path), host)

    @rule(data=st.data())
    def readlink(self, data: st.DataObject) -> None:
        path = self.path(data)
        self.same(lambda: self.f.readlink("/" + path), lambda: os.readlink(self.host(path)))

    @rule(data=st.data())
    def listdir(self, data: st.DataObject) -> None:
        path = data.draw(st.one_of(st.just(""), st.just(self.path(data))))
        self.same(
            lambda: sorted(self.f.listdir("/" + path)),
            lambda: sorted(os.listdir(self.host(path))),
        )

    @rule(data=st.data(), follow=st.booleans())
    def stat(self, data: st.DataObject, follow: bool) -> None:
        path = self.path(data)

        def mine() -> tuple[int, int, int]:
            s = self.f.stat("/" + path) if follow else self.f.lstat("/" + path)
            return stat.S_IFMT(s.mode), s.nlink, -1 if stat.S_ISDIR(s.mode) else s.size

        def host() -> tuple[int, int, int]:
            s = os.stat(self.host(path)) if follow else os.lstat(self.host(path))
            return stat.S_IFMT(s.st_mode), s.st_nlink, -1 if stat.S_ISDIR(s.st_mode) else s.st_size

        self.same(mine, host)

    @rule(data=st.data(), payload=st.binary(min_size=1, max_size=64), offset=offsets)
    def store_through_mapping(self, data: st.DataObject, payload: bytes, offset: int) -> None:
        """A store through a shared mapping of the file, then munmap."""
        files = [p for p in self.tree()[0] if os.path.isfile(self.host(p))]
        if not files:
            return
        path = data.draw(st.sampled_from(files))
        host = self.host(path)
        size = os.path.getsize(host)
        if not size:
            return
        offset %= size
        payload = payload[: size - offset]
        lo = offset // PGSIZE * PGSIZE
        length = offset + len(payload) - lo
        fd = os.open(host, os.O_RDWR)
        try:
            with mmap.mmap(fd, length, mmap.MAP_SHARED, offset=lo) as m:
                m[offset - lo : offset - lo + len(payload)] = payload
        finally:
            os.close(fd)
        assert self.machine is not None
        proc = self.machine.process()
        with self.f.open("/" + path, "r+") as f:
            addr = proc.mmap(length, PROT_READ | PROT_WRITE, MAP_SHARED, f, lo)
            proc.store(addr + offset - lo, payload)
            proc.munmap(addr, length)
        proc.exit()

    @rule(data=st.data())
    def fsync(self, data: st.DataObject) -> None:
        path = self.path(data)

        def mine() -> None:
            with self.f.open("/" + path, "r") as f:
                f.fsync()

        def host() -> None:
            fd = os.open(self.host(path), os.O_RDONLY)
            try:
                if stat.S_ISDIR(os.fstat(fd).st_mode):
                    raise IsADirectoryError(errno.EISDIR, "is a directory")
                os.fsync(fd)
            finally:
                os.close(fd)

        self.same(mine, host)

    @rule()
    def evict(self) -> None:
        """What the flusher does: write back and drop every unused page."""
        assert self.machine is not None
        for pm in self.machine.page_maps:
            pm.remove_contig(0, RADIX_MAX_INDEX + 1)

    @precondition(lambda self: self.fs is not None)
    @rule()
    def remount(self) -> None:
        assert self.machine is not None
        self.f.unmount()
        assert self.machine.check_quiescent() == []
        self.fs = self.machine.mount(self.image, "rw")

    # -- the end -------------------------------------------------------------------------
    def teardown(self) -> None:
        try:
            if self.fs is not None:
                self.fs.unmount()
                assert self.machine is not None
                assert self.machine.check_quiescent() == []
                result = e2.fsck(self.image)
                assert result.clean, result.output
                self.compare_with_debugfs()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def compare_with_debugfs(self) -> None:
        for dirpath, dirnames, filenames in os.walk(self.model):
            rel = os.path.relpath(dirpath, self.model)
            inside = "/" if rel == "." else "/" + rel
            listed = {e.name: e for e in e2.ls(self.image, inside)}
            names = set(dirnames) | set(filenames)
            assert set(listed) - {".", ".."} == names, f"{inside}: {sorted(listed)}"
            for name in names:
                host = os.path.join(dirpath, name)
                st_ = os.lstat(host)
                entry = listed[name]
                assert stat.S_IFMT(entry.mode) == stat.S_IFMT(st_.st_mode), host
                if stat.S_ISREG(st_.st_mode):
                    assert entry.size == st_.st_size, host
                    with open(host, "rb") as f:
                        want = f.read()
                    assert e2.cat(self.image, inside.rstrip("/") + "/" + name) == want, host


Ext2AgainstHost.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestExt2AgainstHost = Ext2AgainstHost.TestCase
