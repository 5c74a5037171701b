"""Every injected host fault reaches a caller with its errno, or stays pending
on a dirty page (oracles/faults.py): the oracle and a planted swallow."""

from __future__ import annotations

import contextlib
import errno

import pytest

from pagemap.check.explore import explore_model
from pagemap.check.scenarios import lookup
from pagemap.kernel.errors import IOFailure, KernelError
from pagemap.kernel.radix import ALL_PAGES
from pagemap.kernel.vfs import File
from pagemap.oracles import DURABILITY
from pagemap.oracles.faults import FaultsReported


def _swallowing_fsync(self: File) -> None:
    # Planted in File.fsync, not Inode.fsync: the mapping's record of the
    # error (kernel/errseq.py) would report what the inode's fsync swallowed.
    inode = self.inode
    inode.mapping.collect_mapped_dirty(0, ALL_PAGES)
    with contextlib.suppress(IOFailure):  # BUG: the failed write back reaches no caller
        inode.mapping.writeback(0, ALL_PAGES)
    inode.sync_backing()


def test_an_fsync_that_swallows_the_hosts_eio_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The swallowed error leaves the page dirty; the other fsync writes it
    back, so no byte is lost, yet nobody ever hears of the failed write."""
    monkeypatch.setattr(File, "fsync", _swallowing_fsync)
    summary = explore_model(lookup("eio-fsync").model(), "dpor", bound=2, shrink=False)
    assert summary.trace is not None
    assert summary.trace.oracle == DURABILITY
    assert "injected host write fault (EIO)" in summary.trace.message
    assert "reached no caller" in summary.trace.message


def test_the_real_fsync_reports_every_fault() -> None:
    summary = explore_model(lookup("eio-fsync").model(), "dpor", bound=2, shrink=False)
    assert summary.trace is None and summary.exhaustive


def test_a_fault_is_matched_by_a_caught_error_of_its_errno_or_a_dirty_page() -> None:
    oracle = FaultsReported()
    oracle.took("write", "eio", 4096)
    oracle.took("write", "short", 0)
    oracle.took("sync", "eio", -1)
    oracle.reported(KernelError("full", errno=errno.ENOSPC))
    # The EIO write is pending on its dirty page; the sync fault has nobody.
    problems = oracle.verdict(lambda offset: offset == 4096)
    assert [str(p) for p in problems] == [
        "durability: an injected host sync fault (EIO) reached no caller: no task saw EIO, "
        "and no dirty page still holds what failed to be written"
    ]
    # One EIO caught: it answers for one EIO fault, and the write's page is clean now.
    oracle.reported(IOFailure("disk"))
    assert [str(p) for p in oracle.verdict(lambda offset: False)] == [
        "durability: an injected host sync fault (EIO) reached no caller: no task saw EIO, "
        "and no dirty page still holds what failed to be written"
    ]
