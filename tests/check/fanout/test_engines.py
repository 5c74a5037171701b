"""Every engine gives the same answer, and survives its workers.

The same plans run serially, in 2 worker processes and on a local Dask
cluster of 2 workers, and give the same summaries and the same first
counterexample.  A worker killed mid-run has its unit run again and the
answer is whole; a halted engine (a stop) hands back what its running units
explored; a unit that raises, a unit whose workers keep dying and a unit
that runs past its timeout are each reported as such.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pagemap.check.fanout import (
    ClusterUnavailable,
    SerialEngine,
    Status,
    UnitFailed,
    WorkerLost,
    explore,
)
from pagemap.check.fanout.cluster import DaskEngine
from pagemap.check.fanout.local import RETRIES, LocalEngine
from pagemap.check.fanout.unit import STOPPED, Batch
from pagemap.check.scenarios import lookup
from pagemap.cli import main
from tests.check.fanout.models import HERE, SAFE, ref
from tests.check.fanout.test_ledger import PLANS, answer, unit

# The Dask tests share one worker of the test run, and one cluster.
pytestmark = pytest.mark.xdist_group("dask")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    import distributed

    local: Any = distributed.LocalCluster  # untyped
    with local(
        n_workers=2,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        silence_logs=logging.ERROR,
    ) as c:
        yield c


@pytest.mark.parametrize("name", ["dpor, a violation late", "portfolio", "dpor, a budget"])
def test_every_engine_gives_the_same_answer(name: str, cluster: Any) -> None:
    plan = PLANS[name]
    want = answer(explore(plan, SerialEngine()).summaries)
    assert answer(explore(plan, LocalEngine(2)).summaries) == want
    assert answer(explore(plan, DaskEngine(cluster.scheduler_address)).summaries) == want


def _rows(out: str) -> list[list[str]]:
    """The summary table's rows, less steps/s (a speed, not an answer)."""
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines()]
    return [r[:5] + r[6:] for r in rows if len(r) == 7 and r[0] != "scenario"]


def test_pagemap_check_answers_alike_serially_with_jobs_and_on_dask(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["check", "load-remove", "eio-load", "store-remove", "--split", "20"]
    tables = []
    for extra in ([], ["--jobs", "2"], ["--scheduler", "local", "--jobs", "2"]):
        assert main(argv + extra) == 0
        out = capsys.readouterr().out
        tables.append(_rows(out))
        where = {0: "in this process", 2: "in 2 worker processes", 4: "on a local Dask cluster"}
        assert f"units of work {where[len(extra)]}" in out.splitlines()[0]
    assert len(tables[0]) == 3 and all(r[-1] == "holds" for r in tables[0])
    assert tables[1] == tables[0] and tables[2] == tables[0]


def test_a_worker_killed_mid_run_costs_nothing_of_the_answer() -> None:
    model = lookup("write-remove").model()
    big = dataclasses.replace(
        unit(SAFE, "dpor", split=25),
        scenario="write-remove",
        params=tuple(sorted(model.params.items())),
        functions=None,
    )
    plan = [big]
    want = answer(explore(plan, SerialEngine()).summaries)
    engine = LocalEngine(2)
    killed: list[int] = []

    def kill_one(status: Status) -> None:
        busy = engine.pids(busy=True)
        if not killed and status.schedules > 0 and busy:
            killed.append(busy[0])
            os.kill(busy[0], signal.SIGKILL)

    got = explore(plan, engine, kill_one)
    assert killed and list(engine.deaths.values()) == [1]  # one unit, run again once
    assert answer(got.summaries) == want


def _halted(engine: LocalEngine | DaskEngine, running: Callable[[], bool]) -> list[Batch]:
    """Submit a unit of slow schedules, wait until it runs, and halt the engine."""
    slow = unit(ref("slow", "slow", "slow"), "random", 0, 1000)
    engine.submit(0, slow)
    got: list[Batch] = []
    for _ in range(600):  # at most a minute: the unit alone runs for a minute and more
        got += engine.pump(None, 0.1)
        if running():
            break
    got += engine.halt(10.0)
    engine.close()
    return got


@pytest.mark.parametrize("kind", ["local", "dask"])
def test_a_halt_hands_back_what_running_units_explored(kind: str, cluster: Any) -> None:
    if kind == "local":
        local = LocalEngine(1)
        got = _halted(local, lambda: bool(local.pids(busy=True)))
    else:
        dask = DaskEngine(cluster.scheduler_address)
        got = _halted(dask, lambda: any(dask.client.processing().values()))
    ticks = sum(len(b.ticks) for b in got)
    assert got and got[-1].end is not None and got[-1].end.reason == STOPPED
    assert 0 < ticks < 1000  # what it ran before it stopped, and no more


def test_a_unit_that_raises_is_an_error_naming_it() -> None:
    missing = dataclasses.replace(ref("missing", "add"), setup=f"{HERE}:no_such_setup")
    with pytest.raises(UnitFailed) as info:
        explore([unit(missing, "dpor")], LocalEngine(1))
    assert "missing" in str(info.value) and "no_such_setup" in str(info.value)
    assert info.value.errno == errno.EIO


def test_a_unit_whose_workers_keep_dying_is_given_up() -> None:
    plan = [unit(ref("dying", "die"), "dpor")]
    engine = LocalEngine(2)
    with pytest.raises(WorkerLost) as info:
        explore(plan, engine)
    assert f"died {RETRIES + 1} times" in str(info.value) and "dying" in str(info.value)
    assert engine.pids() == []  # closed: no worker left behind


def test_a_unit_past_its_timeout_is_reported_timed_out() -> None:
    slow = dataclasses.replace(unit(ref("slow", "slow", "slow"), "random", 0, 1000), timeout=0.3)
    (summary,) = explore([slow], LocalEngine(1)).summaries
    assert summary.timed_out == 1 and summary.schedules < 1000 and summary.trace is None


def test_an_unreachable_scheduler_is_one_error() -> None:
    with pytest.raises(ClusterUnavailable) as info:
        DaskEngine("tcp://127.0.0.1:9", connect=1)
    assert "127.0.0.1:9" in str(info.value)


def test_without_dask_installed_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ClusterUnavailable) as info:
        DaskEngine("local", 2)
    assert "pagemap[cluster]" in str(info.value)


def test_pagemap_check_reports_units_that_timed_out(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["check", "load-remove", "--strategy", "random", "--budget", "150"]
    assert main([*argv, "--unit-timeout", "0.001"]) == 0
    out = capsys.readouterr().out
    assert "load-remove: 2 units of work timed out" in out
