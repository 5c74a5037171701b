"""The known-bug zoo (issue 20): each row found with its fix off, holding with
it on and a witness, its shrunk trace short and running the published
mechanism; the durability-at-return oracle; `pagemap check --known`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pagemap.check.context import RunContext
from pagemap.check.explore import explore_model
from pagemap.check.memdisk import MemInode
from pagemap.check.scenario import Params, Scenario
from pagemap.check.scenarios import lookup, registry, zoo
from pagemap.check.scenarios.known import BUGS
from pagemap.check.scenarios.known.bugs import Bug
from pagemap.check.scenarios.known.table import Row, mechanism_missing, run_row
from pagemap.check.shadow import SLOT, ShadowFile
from pagemap.cli import main
from pagemap.hw.memory import PGSIZE
from pagemap.kernel.mman import MAP_SHARED
from pagemap.kernel.mman import PROT_RW as RW
from pagemap.machine import Machine
from pagemap.oracles import DURABILITY
from pagemap.oracles.coherence import stamp
from pagemap.oracles.synced import synced

# The bound on a shrunk trace.
MAX_STEPS = 40
# Rows whose shortest violating schedule in our kernel is longer, and why.  For
# each, a DFS over every schedule of at most 40 steps with at most 3 preemptions
# (2 for the mremap rows, 4 for punch-fault and mkclean-skip) found no
# violation: not the shrinker keeps them long, but the kernel work the race needs.
LONGER = {
    "known-fault-truncate": "the fault's lookup and size check are 13 steps; truncate of the "
    "page it holds 44 (mark, hold, unmap with a shootdown, free what it can, then drop the "
    "held page under its lock); the install, the put that frees the frame and the load "
    "through it 15: 72, with truncate's last pass put off past the load",
    "known-mremap-dirty": "mremap's move (its new region registered, the PTE moved) is 7 "
    "steps, fsync's collect (a 2-core flush), flush and writeback 32, the store 4, and the "
    "rest of mremap (its 2-core flush, the old range cleared, the region gone) 12, all before "
    "the end's check: 55",
    "known-mremap-stale": "mremap's move is 7 steps and truncate's unmap and free of the "
    "moved page (two regions' passes, a ranged 2-core flush) 43, before the load: 55",
    "known-dirty-cow": "a forced write is two rounds of get_user_pages (follow, fault with "
    "its copy; follow again, fault the file page, look it up, recheck it, write): 65 steps, "
    "and the MADV_DONTNEED between (its zap and a 2-core flush) 14: 79",
    "known-fork-fault": "fork's write-protect 12 steps, a COW fault with its copy 26, two "
    "3-core shootdowns (fork's, the fault's) 18 and the stale store 4: 60",
    "known-punch-fault": "the fault is 39 steps in our kernel (the region, the lookup, "
    "readpage under the page lock, the PTE, the load again), and the punch its i_rwsem, "
    "removal's flag and host_lock around it 12, all before the end's check: 51",
    "known-mkclean-fault": "a store's fault, fsync's page_mkclean with its shootdown over 2 "
    "cores and writepage, then a second store and msync's walk: 70 steps",
    "known-mkwrite-writeback": "two write faults (each looks its page up, locks it, installs) "
    "and a whole msync between them: 102 steps",
    "known-mkclean-skip": "mprotect's split and merge of the region under its locks (11 "
    "steps), fsync's walk, page_mkclean and writepage (20), a store and msync (11): 43 steps",
}


@pytest.fixture(scope="module")
def rows() -> dict[str, Row]:
    return {bug.scenario: run_row(bug) for bug in BUGS}


def test_the_zoo_is_a_family_of_its_own() -> None:
    assert set(zoo()) == {b.scenario for b in BUGS}
    assert not set(zoo()) & set(registry())  # `pagemap check` alone runs the same set
    for name, scenario in zoo().items():
        assert lookup(name) is scenario
        assert scenario.defaults["fix"] == 1 and scenario.limits["fix"] == (0, 1)
        doc = scenario.build.__doc__ or ""
        bug = next(b for b in BUGS if b.scenario == name)
        assert str(bug.year) in doc and bug.commit.split()[0] in doc, name


def test_every_fix_is_on_in_the_kernel_as_it_is() -> None:
    machine = Machine(cores=1, memory=4 * PGSIZE)
    proc = machine.process()
    assert proc.flush_before_unlock and proc.settle_keeps_dirty
    assert proc.recheck_size_at_install
    assert proc.fork_locks_vmas and proc.gup_breaks_cow and proc.foll_cow
    pm = machine.page_map(MemInode(machine.executor, machine.page_map, "f", b""))
    assert pm.unmap_every_vmr and pm.atomic_pte_clear
    assert pm.wb_err.per_file and pm.wb_err.failed_page == "keep"
    machine.close()


@pytest.mark.parametrize("name", [b.scenario for b in BUGS])
def test_each_row_is_found_off_and_holds_on_with_a_witness(rows: dict[str, Row], name: str) -> None:
    row = rows[name]
    assert row.expected, row.problems
    assert row.found and row.trace is not None and row.trace.params["fix"] == 0
    assert row.off_schedules <= 20_000 and row.off_seconds < 10
    assert row.covered and row.witness is not None and not row.on_violation
    assert row.witness.first < row.witness.second


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            b.scenario,
            marks=pytest.mark.xfail(reason=LONGER[b.scenario], strict=True)
            if b.scenario in LONGER
            else (),
        )
        for b in BUGS
    ],
)
def test_each_shrunk_trace_is_short(rows: dict[str, Row], name: str) -> None:
    trace = rows[name].trace
    assert trace is not None
    assert trace.steps <= MAX_STEPS, f"{name}: {trace.steps} steps"


@pytest.mark.parametrize("bug", BUGS, ids=lambda b: b.scenario)
def test_each_shrunk_trace_runs_the_published_mechanism(rows: dict[str, Row], bug: Bug) -> None:
    trace = rows[bug.scenario].trace
    assert trace is not None
    assert len(bug.mechanism) >= 2
    assert mechanism_missing(bug, trace) == ""


def test_mechanism_check_can_fail(rows: dict[str, Row]) -> None:
    zap = next(b for b in BUGS if b.scenario == "known-zap-mkclean")
    other = rows["known-drops-dirty"].trace
    assert other is not None
    assert "no kernel/mm.py:MM._settle_dirty" in mechanism_missing(zap, other)


def test_check_known_exits_0_with_every_row(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--known", "--json"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["expected"] is True
    assert [r["bug"] for r in doc["rows"]] == [b.scenario for b in BUGS]
    for r in doc["rows"]:
        assert r["fix_off"]["found"] and r["fix_off"]["oracle"]
        assert r["fix_on"]["verdict"] == "holds" and r["fix_on"]["witness"]["schedule"]
    assert err.strip().splitlines()[-1].startswith("OK: every known bug is found")


def test_check_known_refuses_what_is_not_a_known_bug(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--known", "load-remove"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a known bug" in err


def test_a_fix_off_row_is_a_named_scenario_too(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["check", "known-drops-dirty", "-p", "fix=0", "--strategy", "dfs"]
    assert main([*argv, "--traces", str(tmp_path)]) == 1
    assert "FAILED: durability in known-drops-dirty" in capsys.readouterr().out
    assert main(["check", "known-drops-dirty", "--strategy", "dfs"]) == 0


# -- durability when msync and fsync return ------------------------------------------


def test_synced_judges_each_slot_by_its_version() -> None:
    old, new, other = stamp(0, 1, 1), stamp(0, 1, 2), stamp(0, 2, 5)
    assert synced("fsync", "f", 0, old, old, 64) is None
    assert synced("fsync", "f", 0, old, new, 64) is None  # a later store, written too
    late = synced("fsync", "f", 0, new, old, 64)
    assert late is not None and late.oracle == DURABILITY
    assert "fsync returned" in late.message and "v2 of page 0 slot 1" in late.message
    assert synced("fsync", "f", 0, old, other, 64) is not None  # another slot's bytes
    assert synced("fsync", "f", 0, new, old, 0) is None  # cut by a truncate meanwhile


def _fsync_forgets(ctx: RunContext, p: Params) -> None:
    # An fsync that writes nothing back (its pages only reach the disk at the
    # end, by exit and the end checks' writeback): durable at the end, not
    # when fsync returned.
    f = ShadowFile(ctx, 1)
    proc = ctx.machine.process()
    base = f.map(proc, 1, RW, MAP_SHARED)
    f.store(proc, base + SLOT)
    f.pm.writeback = lambda index, nr_pages: 0  # type: ignore[method-assign]

    def syncer() -> None:
        f.fsync()

    ctx.machine.spawn(syncer, name="fsync")
    f.end_checks()


def test_an_fsync_returning_before_the_store_is_durable_is_caught() -> None:
    model = Scenario("fsync-forgets", "", _fsync_forgets).model()
    summary = explore_model(model, "dfs", budget=10, shrink=False)
    assert summary.trace is not None and summary.trace.oracle == DURABILITY
    assert "fsync returned" in summary.trace.message
