"""The zoo's writeback-error rows: fsyncgate, an error one fsync consumed.

Rules as in bugs.py: the scenario sets the kernel's switch (here the
mapping's WritebackErrors.per_file, kernel/errseq.py) before any task runs
and carries no kernel code of its own.
"""

from __future__ import annotations

import contextlib
import errno

from pagemap.check.context import RunContext
from pagemap.check.scenario import Params, Scenario
from pagemap.check.scenarios.known.bugs import FIX, Bug, Step
from pagemap.check.shadow import ShadowFile
from pagemap.kernel.errors import KernelError
from pagemap.kernel.hostfs import HostFile
from pagemap.kernel.vfs import File
from pagemap.oracles import CRASH
from pagemap.oracles.accounting import no_leak, quiescent


def _fsyncgate(ctx: RunContext, p: Params) -> None:
    """fsyncgate: Linux 5660e13d2fd6 (2017, 4.13, "fs: new infrastructure for
    writeback error handling and reporting") and b4678df184b3 (2018, 4.17,
    "errseq: Always report a writeback error once"), under "clean" (a page
    whose writeback failed is marked clean, as Linux does).

    Racing paths: the fsyncs of two file descriptions of the inode, both
    open when the flusher's writeback of a dirty page failed (the set-up,
    before they run: the host write fails, the page is marked clean and the
    mapping's error flag set; scenarios/errseq.py races the failure itself
    with syncs and opens).  Interleaving: the first fsync finds the flag and
    clears it; the second finds nothing, and nothing dirty either.  Broken:
    the second fsync returns 0 though an error was recorded since its file
    last saw one, and the data it was to make durable is gone (the errseq
    oracle, oracles/errseq.py).  The fix is an errseq word per mapping and
    a mark per file; fix=0 is WritebackErrors.per_file = False, the single
    AS_EIO flag of before 4.13.
    """
    f = ShadowFile(ctx, 1, host=True)
    wb_err = f.pm.wb_err
    wb_err.per_file = bool(p["fix"])
    wb_err.set_failed_page("clean")
    assert f.host_path is not None
    other = ctx.machine.open(f.host_path, "r+")
    f.pwrite(0)  # page 0 dirty before the race
    assert isinstance(f.file, HostFile)
    f.file.faults.fail("write", 1)
    with contextlib.suppress(KernelError):  # the flusher keeps its errors to itself
        f.pm.writeback_expired(everything=True)

    def syncer(file: File) -> None:
        try:
            file.fsync()
        except KernelError as exc:
            ctx.caught(exc)
            if exc.errno != errno.EIO:
                ctx.fail(CRASH, f"a failed host write gave errno {exc.errno}, not EIO")

    ctx.machine.spawn(syncer, f.file, core=0, name="fsync-a")
    ctx.machine.spawn(syncer, other, core=1, name="fsync-b")
    # Not the durability oracle: under "clean" the failed bytes are dropped
    # by design; what must hold is that every file was told (errseq oracle).
    ctx.at_end(lambda: quiescent(ctx.machine))
    ctx.at_end(lambda: no_leak(ctx.machine))


SCENARIOS = (
    Scenario(
        "known-fsyncgate",
        "Linux 4.13/4.17: a writeback error one fsync consumed never reaches another file's",
        _fsyncgate,
        {"fix": 1},
        limits=FIX,
    ),
)

_CHECK = ("kernel/errseq.py", "WritebackErrors.check_and_advance")

BUGS = (
    Bug(
        "known-fsyncgate",
        2017,
        "5660e13d2fd6",
        "fsyncgate: one fsync clears the mapping's error flag; another file's fsync returns 0",
        # Either fsync may look first: the second is told nothing (fix off),
        # or told too (fix on: each file keeps its own mark).
        racy=(Step(*_CHECK, "load"), Step(*_CHECK, "load")),
        mechanism=(Step(*_CHECK, "fetch_and"), Step(*_CHECK, "fetch_and")),
        # The error was recorded in the set-up, before the fsyncs ran; neither
        # records one (the page is clean: nothing left to write).
        absent=(Step("kernel/errseq.py", "WritebackErrors.record", "fetch_or"),),
    ),
)
