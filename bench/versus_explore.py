"""Schedules/s of one exploration on two source trees, in paired rounds.

    git worktree add --detach /tmp/old main
    python -m bench.versus_explore /tmp/old/src src [--scenario store-remove]
        [--budget 1000] [--rounds 11]

Each tree gets a worker process of this interpreter (PYTHONPATH pointing at
the tree) that stays up for every round, so neither side pays for imports
inside a round.  A round asks each worker, in turn (the order alternating
from round to round, as bench/harness.py's `interleave` does), to run the
same exploration: `explore_model` on the scenario with no shrinking, the
same strategy, bound and budget, so both sides run exactly the same
schedules (the worker prints its schedule and step counts, which must agree).
Prints, per exploration (random with no bound, DPOR with bound 2), each
side's median schedules/s and the median of the per-round ratios, new over
old.  Not part of `python -m bench`: it needs a second tree.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
from typing import IO, Any

from bench.harness import Rounds, interleave

# The worker: one line of JSON in ({"strategy", "bound", "budget"}), one out.
# Strategy "bare": the scheduler alone, `budget` schedules of a bare
# SimExecutor (two tasks each taking a spinlock ten times, an atomic add
# inside, a load after; uniform random choices), no Machine, no checker.
WORKER = """
import json, random, sys, time
try:
    from pagemap.check.explore import explore_model
except ImportError:  # a tree from before check/explore.py (7fe8ba6 and older)
    from pagemap.check.runner import explore_model
from pagemap.check.scenarios import lookup
from pagemap.sync.core import Strategy
from pagemap.sync.sim import SimExecutor

class Uniform(Strategy):
    def __init__(self, seed):
        self.random = random.Random(seed).random
    def pick(self, runnable, current, kind):
        return runnable[int(self.random() * len(runnable))]

def bare(i):
    sched = SimExecutor(Uniform(i), clock="idle")
    lock, word = sched.spinlock("lock"), sched.atomic(0, "word")
    def task():
        for _ in range(10):
            with lock:
                word.fetch_add(1)
            word.load()
    sched.spawn(task, (), 0, None)
    sched.spawn(task, (), 1, None)
    sched.run()
    return sched.steps

model = lookup(sys.argv[1]).model({})
for line in sys.stdin:
    job = json.loads(line)
    t0 = time.process_time()
    if job["strategy"] == "bare":
        steps = sum(bare(i) for i in range(job["budget"]))
        schedules = job["budget"]
    else:
        s = explore_model(model, job["strategy"], bound=job["bound"], budget=job["budget"],
                          shrink=False)
        steps, schedules = s.steps, s.schedules
    dt = time.process_time() - t0
    print(json.dumps({"seconds": dt, "schedules": schedules, "steps": steps}), flush=True)
"""

Counts = dict[str, tuple[int, int]]
EXPLORATIONS = (("random", None), ("dpor", 2), ("bare", None))


class Worker:
    def __init__(self, src: str, scenario: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, scenario],
            env={**os.environ, "PYTHONPATH": src},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        stdin: IO[str] | None = self.proc.stdin
        stdout: IO[str] | None = self.proc.stdout
        assert stdin is not None and stdout is not None
        stdin.write(json.dumps(job) + "\n")
        stdin.flush()
        out: dict[str, Any] = json.loads(stdout.readline())
        return out

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.versus_explore", description=__doc__)
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--scenario", default="store-remove")
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args(argv)
    trees = (("old", args.old), ("new", args.new))
    workers = {side: Worker(src, args.scenario) for side, src in trees}
    try:
        for strategy, bound in EXPLORATIONS:
            job = {"strategy": strategy, "bound": bound, "budget": args.budget}
            counts: Counts = {}

            def side(name: str, job: dict[str, Any] = job, counts: Counts = counts) -> float:
                got = workers[name].run(job)
                counts[name] = (got["schedules"], got["steps"])
                return float(got["schedules"]) / float(got["seconds"])

            for name in workers:
                side(name)  # a warm-up round, not kept
            sides = {n: functools.partial(side, n) for n in workers}
            rounds: Rounds = interleave(sides, args.rounds)
            if counts["old"] != counts["new"]:
                print(f"  the two trees ran different work: {counts}")
            print(
                f"{args.scenario} {strategy} bound={bound} budget={args.budget}: "
                f"old {rounds.median('old'):.0f} schedules/s, new {rounds.median('new'):.0f}, "
                f"new/old {rounds.ratio('new', 'old'):.3f} (median of {args.rounds} paired rounds)",
                flush=True,
            )
    finally:
        for w in workers.values():
            w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
