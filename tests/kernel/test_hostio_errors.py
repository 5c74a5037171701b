"""Host errors as the kernel reports them: the host's errno kept (a full host
disk is ENOSPC, not EIO), and a host write that makes no progress is an
error, never a loop."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from pagemap import PGSIZE, Machine
from pagemap.kernel.errors import KernelError
from pagemap.kernel.hostfs import HostFile


def open_file(tmp_path: Path) -> tuple[Machine, HostFile]:
    path = tmp_path / "f"
    path.write_bytes(bytes(2 * PGSIZE))
    machine = Machine(cores=1, memory="1MiB")
    return machine, machine.open(path, "r+")


def test_enospc_from_the_host_reaches_fsync_as_enospc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine, f = open_file(tmp_path)
    f.pwrite(b"x" * 100, 0)

    def full(fd: int, data: object, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(KernelError) as info:
        f.fsync()
    assert info.value.errno == errno.ENOSPC
    assert "No space left" in str(info.value)
    monkeypatch.undo()
    f.fsync()  # the page stayed dirty: nothing was lost
    assert (tmp_path / "f").read_bytes()[:100] == b"x" * 100
    f.close()
    machine.close()


def test_a_host_pwrite_that_returns_zero_is_enospc_not_a_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine, f = open_file(tmp_path)
    f.pwrite(b"y" * 100, 0)
    calls = [0]

    def stuck(fd: int, data: object, offset: int) -> int:
        calls[0] += 1
        if calls[0] > 50:
            raise AssertionError("the host write was asked again and again with no progress")
        return 0

    monkeypatch.setattr(os, "pwrite", stuck)
    with pytest.raises(KernelError) as info:
        f.fsync()
    assert info.value.errno == errno.ENOSPC
    assert "no progress" in str(info.value)
    assert calls[0] == 1
    monkeypatch.undo()
    f.fsync()
    assert (tmp_path / "f").read_bytes()[:100] == b"y" * 100
    f.close()
    machine.close()


@pytest.mark.parametrize("effect", ["enospc", "short", "zero"])
def test_injected_host_write_faults_keep_their_errno_and_lose_nothing(
    tmp_path: Path, effect: str
) -> None:
    machine, f = open_file(tmp_path)
    f.pwrite(b"z" * PGSIZE, 0)
    f.faults.fail("write", 1, effect)
    with pytest.raises(KernelError) as info:
        f.fsync()
    assert info.value.errno == errno.ENOSPC
    f.fsync()
    assert (tmp_path / "f").read_bytes()[:PGSIZE] == b"z" * PGSIZE
    f.close()
    machine.close()


def test_a_bad_fault_effect_is_a_value_error(tmp_path: Path) -> None:
    machine, f = open_file(tmp_path)
    with pytest.raises(ValueError, match="no effect"):
        f.faults.fail("read", 1, "short")
    with pytest.raises(ValueError, match="no effect"):
        f.faults.fail("write", 1, "bogus")
    assert f.faults.pending("read") == 0
    f.close()
    machine.close()


def test_the_host_file_is_still_whole_after_a_short_write(tmp_path: Path) -> None:
    """A host write cut short, then retried by the next fsync, leaves the
    file exactly as written."""
    machine, f = open_file(tmp_path)
    data = os.urandom(2 * PGSIZE)
    f.pwrite(data, 0)
    f.faults.fail("write", 1, "short")
    with pytest.raises(KernelError):
        f.fsync()
    f.fsync()
    assert (tmp_path / "f").read_bytes() == data
    f.close()
    machine.close()
