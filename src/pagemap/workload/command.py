"""`pagemap run`: for now, the demo of the kernel core (workload/demo.py)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "run",
        help="run tasks against a page map over a generated file and check the result",
        description="Loaders and removers race over a page map whose pages come from a "
        "generated file; at the end every page read is checked against the file and the "
        "map's accounting is checked.  Exit 0 only if everything holds.",
    )
    p.add_argument("--executor", choices=("threads", "sim"), default="threads")
    p.add_argument("--seed", type=int, default=1, help="seed for the workload and the sim")
    p.add_argument("--tasks", type=int, default=4, help="loader tasks (default 4)")
    p.add_argument("--pages", type=int, default=256, help="pages in the generated file")
    p.add_argument("--ops", type=int, default=2000, help="page loads per task")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from pagemap.workload.demo import run_demo

    return run_demo(args.executor, args.seed, args.tasks, args.pages, args.ops)
