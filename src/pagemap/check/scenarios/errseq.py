"""Writeback-error scenarios: errors reported once per open file (kernel/errseq.py).

Every ShadowFile's syncs are judged by the errseq oracle (oracles/errseq.py);
these scenarios make writeback fail while files are synced and opened.
"""

from __future__ import annotations

import errno

from pagemap.check.context import RunContext
from pagemap.check.scenario import Params, Scenario
from pagemap.check.shadow import ShadowFile
from pagemap.kernel.errors import KernelError
from pagemap.kernel.hostfs import HostFile
from pagemap.kernel.vfs import File
from pagemap.oracles import CRASH


def _errseq_open(ctx: RunContext, p: Params) -> None:
    # A host file's page is dirty and its next host write fails.  The
    # flusher's pass, an fsync of the open file, and a task that opens the
    # file afresh and fsyncs it race.  Whichever writeback meets the failure
    # records it; the open file hears of it exactly once; the late file hears
    # of it if it opened before anyone had (Linux 4.17), not after.  Under
    # "keep" the page stays dirty, so nothing is lost (the durability oracle).
    f = ShadowFile(ctx, 1, host=True)
    assert isinstance(f.file, HostFile) and f.host_path is not None
    path = f.host_path
    f.pwrite(0)
    f.file.faults.fail("write", 1, "enospc" if p["enospc"] else "eio")
    want = errno.ENOSPC if p["enospc"] else errno.EIO

    def sync(file: File) -> None:
        try:
            f._synced("fsync", [(0, f.shadow.size)], file.fsync)
        except KernelError as exc:
            ctx.caught(exc)
            if exc.errno != want:
                ctx.fail(CRASH, f"a failed host write gave errno {exc.errno}, not {want}")

    def flusher() -> None:
        try:
            f.pm.writeback_expired(everything=True)
        except KernelError as exc:
            if exc.errno != want:
                ctx.fail(CRASH, f"a failed host write gave errno {exc.errno}, not {want}")

    def late() -> None:
        file = ctx.machine.open(path, "r+")
        try:
            sync(file)
        finally:
            file.close()

    ctx.machine.spawn(flusher, core=0, name="writeback")
    ctx.machine.spawn(sync, f.file, core=1, name="fsync")
    ctx.machine.spawn(late, core=1, name="open-fsync")
    f.end_checks()


SCENARIOS = (
    Scenario(
        "errseq-open",
        "a failed writeback is told once to an open file, and to one opened before anyone saw it",
        _errseq_open,
        {"enospc": 0},
        limits={"enospc": (0, 1)},
    ),
)
