"""`make run-soak`: `pagemap run` over 100 random file sizes, from 1 byte to
1 GiB, each under both executors with a small op count; every run must end OK.

Sizes are drawn log-uniformly from a seed, so that files of a few bytes, of a
few pages and of hundreds of mebibytes all come up, and few are whole pages;
1 byte and 1 GiB are always among them.  One line per run; exit 1 if any run
did not hold every oracle, with the failed runs' commands at the end.

    python -m tests.workload.soak [--runs 100] [--ops 200] [--seed 1]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time

from pagemap.workload.runner import run_workload
from pagemap.workload.spec import Spec

GIB = 1 << 30


def sizes(runs: int, seed: int) -> list[int]:
    """`runs` file sizes in [1, 1 GiB]: the two ends, and the rest log-uniform."""
    rng = random.Random(f"run-soak:{seed}")
    drawn = [int(math.exp(rng.uniform(0, math.log(GIB)))) for _ in range(max(0, runs - 2))]
    return [1, GIB, *drawn][:runs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.workload.soak")
    parser.add_argument("--runs", type=int, default=100, help="file sizes (default 100)")
    parser.add_argument("--ops", type=int, default=200, help="operations per run (default 200)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the sizes and the runs")
    args = parser.parse_args(argv)
    failures: list[str] = []
    started = time.perf_counter()
    for i, size in enumerate(sizes(args.runs, args.seed)):
        for executor in ("threads", "sim"):
            seed = args.seed + i
            spec = Spec.build(executor=executor, file_size=size, ops=args.ops, seed=seed)
            t0 = time.perf_counter()
            result = run_workload(spec)
            said = (
                "OK"
                if result.ok
                else "FAILED: "
                + ", ".join(f"{v.label} ({v.detail})" for v in result.verdicts if not v.ok)
            )
            print(
                f"{i + 1:3}/{args.runs} {size:>10} bytes {executor:7} "
                f"{time.perf_counter() - t0:6.1f} s  {said}",
                flush=True,
            )
            if not result.ok:
                failures.append(
                    f"pagemap run --file-size {size} --executor {executor} --ops {args.ops} "
                    f"--seed {seed}"
                )
    print(
        f"{2 * args.runs - len(failures)} of {2 * args.runs} runs held every oracle "
        f"in {time.perf_counter() - started:.0f} s"
    )
    for command in failures:
        print(f"failed: {command}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
