"""The options of `pagemap check` and `pagemap replay`, and the check, before
any work, that every output path can be written.

Rules: `register` adds both subcommands to the CLI's parser, with the
functions that run them (check/command.py's run_check and run_replay); every
numeric option says its range through pagemap/options.py.  An output path
that cannot be written is a ValueError (exit 2) before anything is explored.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

from pagemap import options as opt
from pagemap.check.cli.common import DEFAULT_BUDGET, DEFAULT_MUTANT_TIME, UNIT_TIMEOUT, Command
from pagemap.check.fanout import SPLIT
from pagemap.check.runner import DEFAULT_CAP, DEFAULT_MAX_STEPS
from pagemap.check.strategies import DEFAULT_BOUND, STRATEGIES


def _param(text: str) -> tuple[str, int]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"a parameter is NAME=INTEGER, not {text!r}")
    try:
        return key, int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"parameter {key} needs an integer, not {value!r}"
        ) from None


def register(sub: Any, run_check: Command, run_replay: Command) -> None:
    check: argparse.ArgumentParser = sub.add_parser(
        "check",
        help="explore interleavings of the named scenarios and check every oracle",
        description="Explore the interleavings of each scenario (all of them by default) "
        "under the deterministic scheduler, checking memory safety as accesses land, "
        "coherence as loads return, and durability and accounting at the end.  By default a "
        "short PCT pass over every scenario, then DPOR with at most 2 preemptions to the "
        "end.  Exit 0 if every oracle holds, 1 with a counterexample trace on a violation, "
        "2 on bad arguments.",
    )
    check.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="scenario names")
    check.add_argument(
        "--strategy",
        choices=STRATEGIES,
        help="one strategy instead of the portfolio (PCT, then DPOR to the end)",
    )
    check.add_argument(
        "--budget",
        type=opt.whole(1),
        help=f"schedules per scenario (default {DEFAULT_BUDGET} for random and pct; "
        f"dpor and dfs: to the end, at most {DEFAULT_CAP:,})",
    )
    check.add_argument(
        "--time", type=opt.seconds(0.001, 10**7), help="seconds per scenario instead of a budget"
    )
    check.add_argument(
        "--preemptions",
        type=opt.whole(0, 1000),
        help=f"preemption bound (default {DEFAULT_BOUND} for dpor and dfs, none for random "
        "and pct)",
    )
    check.add_argument("--seed", type=opt.whole(0), default=0, help="strategy seed (default 0)")
    check.add_argument(
        "--depth", type=opt.whole(1, 1000), default=3, help="PCT bug depth (default 3)"
    )
    check.add_argument(
        "--jobs",
        type=opt.whole(1, 1024),
        default=1,
        help="worker processes (default 1: this process); with --scheduler local, Dask workers",
    )
    check.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run the units on the Dask cluster whose scheduler is at ADDRESS "
        "(tcp://host:8786), or 'local' for a cluster of --jobs workers on 127.0.0.1; "
        "needs pip install 'pagemap[cluster]'",
    )
    check.add_argument(
        "--split",
        type=opt.whole(1, 10**9),
        default=SPLIT,
        metavar="N",
        help=f"dfs and dpor: schedules a unit of work runs before it hands the rest of its "
        f"subtree back as new units (default {SPLIT})",
    )
    check.add_argument(
        "--unit-timeout",
        type=opt.seconds(0.001, 10**7),
        default=UNIT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up a unit of work that runs longer, and report it (default {UNIT_TIMEOUT:g})",
    )
    check.add_argument(
        "--param",
        "-p",
        type=_param,
        action="append",
        default=[],
        metavar="NAME=N",
        help="set a scenario parameter (applies to every scenario that takes it)",
    )
    check.add_argument(
        "--max-steps",
        type=opt.whole(1, 10**9),
        default=DEFAULT_MAX_STEPS,
        help=f"step budget per schedule (default {DEFAULT_MAX_STEPS:,})",
    )
    check.add_argument("--traces", default="traces", help="directory for counterexample traces")
    check.add_argument("--no-shrink", action="store_true", help="keep counterexamples unshrunk")
    check.add_argument(
        "--validate",
        action="store_true",
        help="check every step's footprint against what it did (check/footprints.py) and "
        "every plain attribute two tasks touch against the order the footprints give "
        "(check/hidden.py): a step that hides a dependency from DPOR is a violation "
        "(slower; the same as PAGEMAP_VALIDATE=1)",
    )
    check.add_argument("--list", action="store_true", help="list the scenarios and exit")
    check.add_argument(
        "--mutants",
        action="store_true",
        help="run the scenarios against every mutant of the kernel (check/mutants/) and "
        "report which scenario killed each; exit 0 only if every mutant is killed",
    )
    check.add_argument(
        "--auto",
        action="store_true",
        help="with --mutants: instead of the table of check/mutants/, a mutant per lock "
        "taken by a `with` in kernel/, that lock not taken, each against the scenarios "
        "that run its function, each survivor sorted by a census of the real kernel "
        "(atomic in the model, never contended, unexplained); exit 1 on an unexplained "
        "survivor not listed in check/mutants/auto_equivalent.txt, or a stale entry",
    )
    check.add_argument(
        "--mutant-time",
        type=opt.seconds(0.001, 10**7),
        default=DEFAULT_MUTANT_TIME,
        metavar="SECONDS",
        help=f"with --mutants --auto: seconds per mutant before it is called a survivor "
        f"(default {DEFAULT_MUTANT_TIME:g})",
    )
    check.add_argument(
        "--mutant",
        action="append",
        default=[],
        metavar="NAME",
        help="with --mutants: only this mutant (repeatable); without: run the check "
        "under this one mutant (its own scenario when none is named) and write its "
        "counterexample, which `pagemap replay` replays under the mutant",
    )
    check.add_argument(
        "--coverage",
        action="store_true",
        help="run the scenarios under branch coverage and report the lines and branches of "
        "kernel/ and hw/ that no scenario reaches (less those listed in check/unreached.txt)",
    )
    check.add_argument(
        "--known",
        action="store_true",
        help="run the known-bug zoo (check/scenarios/known/; the named ones, or all): each "
        "with its fix off (the portfolio must find it) and on (DPOR must cover it and show a "
        "schedule that ran its racing pair); exit 0 only if every row is as expected",
    )
    check.add_argument(
        "--markdown",
        action="store_true",
        help="with --known: print the table and each bug's shrunk trace as Markdown on "
        "stdout (docs/known-bugs.md is made so)",
    )
    _check_output_options(check)
    check.set_defaults(func=run_check)

    rep: argparse.ArgumentParser = sub.add_parser(
        "replay",
        help="re-run a counterexample trace step by step",
        description="Re-run the schedule in TRACE on the scenario (or model) it names, under "
        "the settings it records, and print one row per step: the core, task, operation, "
        "the slot word as refcount|removal|ppn, PTE bits, and where in the code.  Exit 1 if "
        "the violation reproduces, 0 if the schedule runs and no longer fails, 2 if TRACE is "
        "not a trace, 3 if the schedule no longer fits the code or the trace names code "
        "replay may not import.",
    )
    rep.add_argument("trace", metavar="TRACE", help="a JSON trace written by pagemap check")
    rep.add_argument(
        "--model-path",
        metavar="DIR",
        action="append",
        default=[],
        help="modules found under DIR may be imported: where a trace of a model of your own "
        "may load its functions from (repeatable; a trace naming any other code is refused)",
    )
    _replay_output_options(rep)
    rep.set_defaults(func=run_replay)


def _check_output_options(check: argparse.ArgumentParser) -> None:
    check.add_argument(
        "--report",
        metavar="DIR",
        help="write a self-contained HTML timeline of every counterexample into DIR",
    )
    check.add_argument(
        "--json",
        action="store_true",
        help="print the result as one JSON document (check.schema.json) on stdout",
    )


def _replay_output_options(rep: argparse.ArgumentParser) -> None:
    rep.add_argument(
        "--html",
        metavar="FILE",
        help="write the replay as a self-contained HTML timeline: one column per core, "
        "one row per step, a click on a step shows the machine's state there",
    )
    rep.add_argument(
        "--json",
        action="store_true",
        help="print the replay as one JSON document (replay.schema.json) on stdout",
    )


def _check_output_paths(args: argparse.Namespace) -> None:
    """Refuse, before any work, an output path that cannot be written."""
    opt.check_output_dir("--traces", args.traces)
    _try_writing("--traces", args.traces)
    if args.report is not None:
        opt.check_output_dir("--report", args.report)
        _try_writing("--report", args.report)


def _try_writing(option: str, path: str) -> None:
    """Make a file in directory `path`, or (if it is not there yet) a directory
    where it would be made, and remove it again: permission bits do not say
    everything (root passes them, yet /proc and read-only mounts refuse), and a
    counterexample found after an hour must not be lost for want of a place."""
    probe = Path(path)
    while not probe.is_dir() and probe != probe.parent:
        probe = probe.parent
    try:
        if probe == Path(path):
            fd, made = tempfile.mkstemp(prefix=".pagemap-probe-", dir=probe)
            os.close(fd)
            os.unlink(made)
        else:
            os.rmdir(tempfile.mkdtemp(prefix=".pagemap-probe-", dir=probe))
    except OSError as exc:
        raise ValueError(
            f"{option} {path}: nothing can be written in {probe} ({exc.strerror or exc})"
        ) from None
