"""One of a thing is singular wherever pagemap counts: "1 preemption", "1 schedule",
"1 scenario", "1 process", never "1 preemptions"."""

from __future__ import annotations

import argparse
import re

import pytest

from pagemap.check.command import banner, stopped_line, verdict_line
from pagemap.check.counterexample import summary_of
from pagemap.check.fanout.display import describe
from pagemap.check.fanout.driver import Status
from pagemap.check.model import CounterexampleFound
from pagemap.check.replay import Replay
from pagemap.check.runner import Summary
from pagemap.check.trace import Trace
from pagemap.cli import build_parser
from pagemap.workload.command import banner as run_banner
from pagemap.workload.spec import Spec

# A count of one, then a plural noun: what none of these lines may hold.
ONE_THEN_PLURAL = re.compile(
    r"(?<![\d,./])1 (preemptions|schedules|steps|scenarios|units|processes|operations|cores"
    r"|mutants|workers|tasks)\b"
)


def check_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["check", *argv])


def trace(**kw: object) -> Trace:
    fields: dict[str, object] = dict(
        model={"scenario": "load-race"},
        params={},
        cores=1,
        memory=65536,
        max_steps=1,
        strategy="dfs",
        seed=0,
        schedule_index=1,
        preemption_bound=1,
        schedule=[0],
        steps=1,
        preemptions=1,
        oracle="coherence",
        message="m",
        shrunk_from={"steps": 1, "preemptions": 1},
    )
    fields.update(kw)
    return Trace(**fields)  # type: ignore[arg-type]


def one_schedule() -> Summary:
    s = Summary("load-race", {}, "dfs", 0, 1)
    s.schedules = 1
    return s


@pytest.mark.parametrize(
    "line",
    [
        banner(check_args("load-race", "--strategy", "dfs", "--preemptions", "1"), ["x"], 1),
        banner(check_args("--preemptions", "1"), ["x"], 1),
        banner(check_args("--strategy", "dfs", "--preemptions", "1", "--budget", "1"), ["x"], 1),
        banner(check_args("--strategy", "pct", "--budget", "1"), ["x"], 1),
        verdict_line([one_schedule()], [], 0.1),
        stopped_line([one_schedule()], 0.1, 130),
        run_banner(Spec.build(cores=1, procs=1, ops=1, memory="512KiB", file_size="1MiB")),
        summary_of(trace(), Replay([], None, False, True, 1, cycle=(0, 1))),
        str(CounterexampleFound(one_schedule(), trace(), "")),
        describe(Status(1, 1, 1, 1.0, "load-race", None, 1)),
    ],
    ids=[
        "check banner, dfs",
        "check banner, portfolio",
        "check banner, budget",
        "check banner, pct",
        "check verdict",
        "check stopped",
        "run banner",
        "counterexample summary",
        "counterexample found",
        "progress",
    ],
)
def test_one_is_singular(line: str) -> None:
    assert ONE_THEN_PLURAL.search(line) is None, line
    assert re.search(
        r"\b1 (preemption|schedule|scenario|unit|process|operation|core|step)\b", line
    ), line


def test_two_is_plural() -> None:
    args = check_args("--strategy", "dfs", "--preemptions", "2", "--budget", "2", "--jobs", "2")
    line = banner(args, ["x", "y"], 2)
    assert "at most 2 preemptions" in line and "2 schedules each" in line
    assert line.startswith("pagemap check: 2 scenarios,") and "2 units of work" in line
