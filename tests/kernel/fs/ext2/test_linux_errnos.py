"""The root directory's errnos, and a truncate size that is not an int, as
Linux gives them.  The root's errnos are asked of the host too (calls on "/"
that Linux refuses before it looks at anything, so they change nothing)."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from pagemap import Machine
from pagemap import e2fsprogs as e2
from pagemap.kernel.errors import KernelError
from pagemap.kernel.fs.ext2 import Ext2FS


@pytest.fixture
def fs(tmp_path: Path) -> Ext2FS:
    image = tmp_path / "fs.img"
    e2.mkfs(image, 1 << 20, 1024)
    machine = Machine(cores=1, memory="1MiB")
    mounted = machine.mount(image, "rw")
    mounted.create("/f").close()
    return mounted


def errno_of(fn: Callable[[], object]) -> int:
    try:
        fn()
    except OSError as exc:
        assert exc.strerror  # a sentence, not just a number
        return exc.errno or 0
    return 0


def test_the_root_gives_linux_errnos(fs: Ext2FS, tmp_path: Path) -> None:
    host_file = tmp_path / "hostfile"
    host_file.write_bytes(b"")
    missing = str(tmp_path / "missing")
    cases: list[tuple[str, Callable[[], object], Callable[[], object], int]] = [
        ("mkdir /", lambda: fs.mkdir("/"), lambda: os.mkdir("/"), errno.EEXIST),
        ("unlink /", lambda: fs.unlink("/"), lambda: os.unlink("/"), errno.EISDIR),
        ("rmdir /", lambda: fs.rmdir("/"), lambda: os.rmdir("/"), errno.EBUSY),
        (
            "rename to /",
            lambda: fs.rename("/missing", "/"),
            lambda: os.rename(missing, "/"),
            errno.EBUSY,
        ),
        ("link to /", lambda: fs.link("/f", "/"), lambda: os.link(host_file, "/"), errno.EEXIST),
        ("symlink at /", lambda: fs.symlink("t", "/"), lambda: os.symlink("t", "/"), errno.EEXIST),
        (
            "exclusive create of /",
            lambda: fs.create("/"),
            lambda: os.open("/", os.O_CREAT | os.O_EXCL | os.O_RDWR),
            errno.EEXIST,
        ),
        (
            "open / for writing",
            lambda: fs.open("/", "r+"),
            lambda: os.open("/", os.O_RDWR),
            errno.EISDIR,
        ),
        (
            "open / with O_CREAT|O_TRUNC",
            lambda: fs.open("/", "w"),
            lambda: os.open("/", os.O_CREAT | os.O_TRUNC | os.O_WRONLY),
            errno.EISDIR,
        ),
    ]
    for what, mine, host, linux in cases:
        assert errno_of(host) == linux, f"{what}: the host does not give {linux}"
        got = errno_of(mine)
        assert got == linux, f"{what}: ext2 gave {errno.errorcode.get(got, got)}"
    # Linux refuses these before it looks at the source: none is a rename of "/".
    assert errno_of(lambda: fs.rename("/", "/x")) == errno.EBUSY
    assert errno_of(lambda: fs.link("/", "/y")) == errno.EPERM
    assert fs.listdir("/") == ["lost+found", "f"]


@pytest.mark.parametrize("size", [1.5, 2.0, "3", None])
def test_a_truncate_size_that_is_not_an_int_is_a_type_error(fs: Ext2FS, size: object) -> None:
    with fs.open("/f", "r+") as f:
        f.pwrite(b"abc", 0)
        with pytest.raises(TypeError, match="the size must be an int"):
            f.truncate(size)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="the size must be an int"):
            fs.truncate("/f", size)  # type: ignore[arg-type]
        assert f.size == 3
        assert f.pread(10, 0) == b"abc"
    assert fs.check_quiescent() == []


def test_a_truncate_size_that_is_an_index_is_taken(fs: Ext2FS) -> None:
    class Two:
        def __index__(self) -> int:
            return 2

    fs.truncate("/f", Two())  # type: ignore[arg-type]
    assert fs.stat("/f").size == 2
    with pytest.raises(KernelError) as info:
        fs.truncate("/f", -1)
    assert info.value.errno == errno.EINVAL
