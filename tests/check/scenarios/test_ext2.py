"""The ext2 scenarios under `pagemap check`: DPOR to the end finds nothing in
the real driver, and finds the mutant that frees a block in the bitmap
before the inode lets go of it."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest

from pagemap.check import Trace
from pagemap.check.mutants import lookup_mutant
from pagemap.check.runner import run_schedule
from pagemap.check.scenarios import lookup
from pagemap.check.strategies import FollowChooser
from pagemap.cli import main
from pagemap.kernel.fs.ext2.bmap import BlockMap
from pagemap.kernel.mkwrite import DIRTY_TRACKING
from pagemap.machine import DIRTY_TRACKING_ENV

SCENARIOS = [
    "ext2-store-remove",
    "ext2-append-truncate",
    "ext2-unlink-reuse",
    "ext2-indirect-truncate",
    "ext2-hole-race",
    "ext2-dindirect-truncate",
    "ext2-namespace-writeback",
    "ext2-truncate-read",
    "ext2-close-unlinked",
    "ext2-truncate-write",
    "ext2-forget-writeback",
    "ext2-last-block",
    "ext2-indirect-hole",
    "ext2-dindirect-cut",
    "ext2-create-create",
]


truncate_frees_first = lookup_mutant("ext2-frees-first").patches["truncate"]


@pytest.mark.parametrize("mode", DIRTY_TRACKING)
@pytest.mark.parametrize("name", SCENARIOS)
def test_the_scenario_holds_under_pagemap_check_dpor_to_the_end(
    name: str,
    mode: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under both dirty-tracking modes: under "wp" a store into a hole
    allocates its block in page_mkwrite, under "dbit" at writepage."""
    monkeypatch.setenv(DIRTY_TRACKING_ENV, mode)
    code = main(["check", name, "--strategy", "dpor", "--traces", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "holds" in out and "yes" in out  # exhaustive
    assert not list(tmp_path.iterdir())


def test_the_frees_first_mutant_is_caught_and_its_trace_replays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with mock.patch.object(BlockMap, "truncate", truncate_frees_first):
        code = main(["check", "ext2-append-truncate", "--traces", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "named by inode" in out and "memory safety" in out
    (saved,) = tmp_path.glob("*.json")
    trace = Trace.load(saved)
    assert trace.preemptions >= 1  # the other writer must run inside the window
    model = lookup("ext2-append-truncate").model()
    with mock.patch.object(BlockMap, "truncate", truncate_frees_first):
        follow = FollowChooser(trace.schedule)
        again = run_schedule(model, follow)
        assert again.violation is not None and again.violation.oracle == "memory safety"
        assert follow.followed
    # The real driver, on the very same schedule, is fine.
    assert run_schedule(model, FollowChooser(trace.schedule)).violation is None
