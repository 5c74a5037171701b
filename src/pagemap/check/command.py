"""`pagemap check` and `pagemap replay`.

check explores every named scenario (or those given).  By default it is a
portfolio, in the manner of Coyote's: a short PCT pass over every scenario,
interleaved, which finds most bugs in seconds, then DPOR with at most two
preemptions over every scenario to the end, which proves the rest.  The whole
run is a plan of units of work (check/fanout), run in this process, in
`--jobs` worker processes, or on a Dask cluster (`--scheduler`), with the
same answer from each.  Ctrl-C or SIGTERM stops it within a second, prints
what was explored, and exits 130 (143).  On the first violation it shrinks the
counterexample, writes its JSON trace, prints the replay table and the one
command that replays it, and exits 1.

replay re-runs a trace step by step.  Exit codes: 0 every oracle holds (or
the replayed schedule no longer fails), 1 a violation, 2 bad input, 3 the
trace no longer fits the code (it could not be followed, or fails otherwise) or
names code replay may not import: a model of your own is loaded only from a
`--model-path DIR` (check/modelpath.py).

Output: a counterexample prints as a timeline of its steps (check/counterexample.py,
narrow from 80 columns); `--report DIR` (check) and `--html FILE` (replay) write it
as a self-contained page; `--json` prints one document that check.schema.json or
replay.schema.json (check/schemas/) describes, and nothing else on stdout.  Every
output path is checked before any work starts.  check ends with one verdict line.

Rules: this module registers both commands and runs them (the plan, the
modes' dispatch, the exploration, the replay); their parts are in check/cli/,
and the names callers and tests use are re-exported here.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from pagemap import options as opt
from pagemap.check.cli.args import _check_output_paths
from pagemap.check.cli.args import register as register_parsers
from pagemap.check.cli.auto import _auto_mutants
from pagemap.check.cli.common import BAD_INPUT as BAD_INPUT
from pagemap.check.cli.common import CHECK_SCHEMA as CHECK_SCHEMA
from pagemap.check.cli.common import (
    CHUNK,
    DEFAULT_BUDGET,
    NO_LONGER_FITS,
    OK,
    PCT_CHUNK,
    PORTFOLIO_PCT,
    UNIT_TIMEOUT,
    _say,
)
from pagemap.check.cli.common import REPLAY_SCHEMA as REPLAY_SCHEMA
from pagemap.check.cli.common import VIOLATION as VIOLATION
from pagemap.check.cli.common import _console as _console
from pagemap.check.cli.common import plural as plural
from pagemap.check.cli.coverage import _coverage
from pagemap.check.cli.known import _known_bugs
from pagemap.check.cli.mutants import _mutants
from pagemap.check.cli.mutants import run_mutant as run_mutant
from pagemap.check.cli.output import Found as Found
from pagemap.check.cli.output import banner as banner
from pagemap.check.cli.output import check_document as check_document
from pagemap.check.cli.output import conclude as conclude
from pagemap.check.cli.output import stopped_line as stopped_line
from pagemap.check.cli.output import verdict_line as verdict_line
from pagemap.check.cli.replay import _print_verdict, model_of, replay_document, replay_verdict
from pagemap.check.cli.replay import result_where as result_where
from pagemap.check.counterexample import renderable, replay_command, timeline_of, write_page
from pagemap.check.fanout import SPLIT, Explored, Stop, Unit, explore, make_engine, merge
from pagemap.check.fanout import run_serial as run_serial
from pagemap.check.fanout.display import Display
from pagemap.check.footprints import VALIDATE_ENV
from pagemap.check.modelpath import ModelPath, Refused
from pagemap.check.replay import replay
from pagemap.check.runner import DEFAULT_CAP, Model, Summary
from pagemap.check.scenarios import lookup, registry, zoo
from pagemap.check.strategies import DEFAULT_BOUND, EXHAUSTIVE
from pagemap.check.trace import Trace, TraceError


def register(sub: Any) -> None:
    register_parsers(sub, run_check, run_replay)


# -- check ------------------------------------------------------------------------


def plan(args: argparse.Namespace, models: Mapping[str, Model]) -> list[Unit]:
    """The plan: the portfolio, or one strategy over every scenario.  It
    depends on the options, never on the number of workers (but for --time,
    where each worker gets a stream of schedules of its own)."""
    units: list[Unit] = []
    split = getattr(args, "split", SPLIT)
    timeout = getattr(args, "unit_timeout", UNIT_TIMEOUT)

    def unit(name: str, strategy: str, first: int, budget: int | None, phase: str) -> Unit:
        bound = args.preemptions
        if bound is None and strategy in EXHAUSTIVE:
            bound = DEFAULT_BOUND
        return Unit(
            name,
            tuple(sorted(models[name].params.items())),
            strategy,
            args.seed,
            bound if strategy in EXHAUSTIVE or args.preemptions is not None else None,
            args.depth,
            args.max_steps,
            first,
            budget,
            args.time,
            phase,
            split=split if strategy in EXHAUSTIVE and args.time is None else None,
            timeout=timeout,
        )

    names = list(models)
    if args.strategy is None:
        for first in range(0, PORTFOLIO_PCT, PCT_CHUNK):
            units += [unit(n, "pct", first, PCT_CHUNK, "pct") for n in names]
        units += [unit(n, "dpor", 0, args.budget or DEFAULT_CAP, "") for n in names]
        return units
    if args.strategy in EXHAUSTIVE:
        budget = args.budget if args.budget is not None else (None if args.time else DEFAULT_CAP)
        return [unit(n, args.strategy, 0, budget, "") for n in names]
    if args.time is not None:
        return [
            unit(n, args.strategy, j * 10**9, None, "") for n in names for j in range(args.jobs)
        ]
    budget = args.budget or DEFAULT_BUDGET
    for first in range(0, budget, CHUNK):
        units += [unit(n, args.strategy, first, min(CHUNK, budget - first), "") for n in names]
    return units


def run_check(args: argparse.Namespace) -> int:
    console = _console(args)
    scenarios = registry()
    if args.list:
        for s in [*scenarios.values(), *zoo().values()]:
            params = " ".join(f"{k}={v}" for k, v in s.defaults.items())
            console.print(f"[bold]{s.name}[/bold]  {s.summary}  [dim]{params}[/dim]")
        return OK
    if args.known:
        return _known_bugs(console, args)
    if args.markdown:
        raise ValueError("--markdown prints the table of --known")
    if args.budget is not None and args.time is not None:
        raise ValueError("give --budget or --time, not both")
    if args.strategy in ("random", "pct") and args.time is None and args.budget is None:
        args.budget = DEFAULT_BUDGET
    _check_output_paths(args)
    if args.validate:
        # Read by every run_schedule of this process and of the workers it
        # starts, which inherit the environment.
        os.environ[VALIDATE_ENV] = "1"
    if args.auto and not args.mutants:
        raise ValueError("--auto goes with --mutants")
    if args.mutants and args.auto:
        if args.scenarios or args.scheduler is not None:
            raise ValueError("--mutants --auto chooses its scenarios and runs here (--jobs)")
        return _auto_mutants(console, args, plan)
    if args.mutant and not args.mutants:
        return _under_mutant(console, args)
    names = args.scenarios or list(scenarios)
    for name in names:
        lookup(name)  # unknown names: one line, exit 2
    overrides = dict(args.param)
    if not args.scenarios:
        _taken_by_some(scenarios.values(), overrides)
    models: dict[str, Model] = {
        n: lookup(n).model(overrides if args.scenarios else _known(scenarios[n], overrides))
        for n in names
    }
    units = plan(args, models)
    if (args.mutants or args.coverage) and args.scheduler is not None:
        raise ValueError(
            "--scheduler runs an exploration on a cluster; --mutants and --coverage run in "
            "worker processes here (--jobs)"
        )
    if args.mutants:
        return _mutants(console, args, units)
    if args.coverage:
        return _coverage(console, args, units)
    t0 = time.perf_counter()
    explored = _explore(console, args, names, units)
    summaries = _by_scenario(names, units, explored.summaries)
    seconds = time.perf_counter() - t0
    stopped = None if explored.stopped is None else explored.stopped.exit_code
    return conclude(console, args, models, summaries, seconds, stopped)


def _under_mutant(console: Console, args: argparse.Namespace) -> int:
    """`check --mutant NAME [SCENARIO ...]`: the check, on the kernel with one
    mutant applied (its own scenario and parameters when none is named), in
    this process; a counterexample's trace names the mutant, so that `pagemap
    replay` applies it again."""
    from pagemap.check.mutants import lookup_mutant

    if len(args.mutant) > 1:
        raise ValueError("--mutant without --mutants runs one mutant: name one")
    if args.coverage or args.scheduler is not None:
        raise ValueError("--mutant runs the check in this process: no --coverage, no --scheduler")
    mutant = lookup_mutant(args.mutant[0])
    if not args.scenarios:
        args.scenarios = [mutant.scenario]
        args.param = [*mutant.params.items(), *args.param]
    args.jobs = 1  # the mutant patches this process's kernel only
    args.mutant_name = mutant.name
    args.mutant = []
    _say(console, f"under the mutant {mutant.name}: {mutant.broken}")
    with mutant.applied():
        return run_check(args)


def _by_scenario(names: list[str], units: list[Unit], results: list[Summary]) -> list[Summary]:
    parts: dict[str, list[Summary]] = {n: [] for n in names}
    for s in results:
        parts[s.scenario].append(s)
    return [merge(parts[n]) for n in names if parts[n]]


def _taken_by_some(scenarios: Iterable[Any], overrides: Mapping[str, int]) -> None:
    """With no scenario named, a parameter applies where it is taken; one that no
    scenario takes is a typo, and must not run the whole job without it."""
    taken = sorted({k for s in scenarios for k in s.defaults})
    for key in overrides:
        if key not in taken:
            raise ValueError(
                f"no scenario takes parameter {key!r} (the scenarios' parameters: "
                f"{', '.join(taken)})"
            )


def _known(scenario: Any, overrides: dict[str, int]) -> dict[str, int]:
    # With no scenario named, a parameter applies to the scenarios that take it.
    return {k: v for k, v in overrides.items() if k in scenario.defaults}


def _explore(
    console: Console, args: argparse.Namespace, names: Sequence[str], units: list[Unit]
) -> Explored:
    """Run the plan on the engine the options name, under the progress display;
    the banner once the engine is up.  Ctrl-C and SIGTERM stop it, from the
    engine's start on (the answer then holds what was explored)."""
    stop = Stop()
    with stop.on_signals():
        engine = make_engine(args.jobs, args.scheduler)
        _say(console, banner(args, names, len(units), engine.name))
        with Display(console) as display:
            return explore(units, engine, display.update, stop)


# -- replay -------------------------------------------------------------------------


def run_replay(args: argparse.Namespace) -> int:
    console = _console(args)
    if args.html is not None:
        opt.check_output_file("--html", args.html)
    allowed = ModelPath.of(args.model_path)
    try:
        trace = Trace.load(args.trace)
    except TraceError as exc:
        raise ValueError(str(exc)) from None
    with allowed.on_sys_path():
        try:
            model, differs = model_of(trace, allowed)
        except Refused as exc:
            print(f"pagemap replay: {exc}", file=sys.stderr)
            if args.json:
                doc = replay_document(args.trace, trace, None, str(exc), refused=True)
                print(json.dumps(doc, indent=1))
            return NO_LONGER_FITS
        if differs:
            print(f"pagemap replay: {differs}", file=sys.stderr)
            if args.json:
                print(json.dumps(replay_document(args.trace, trace, None, differs), indent=1))
            return NO_LONGER_FITS
        result = replay(model, trace, states=args.html is not None or args.json, explain=True)
    command = replay_command(args.trace) + "".join(
        f" --model-path {shlex.quote(str(d))}" for d in args.model_path
    )
    timeline = timeline_of(trace, result, command, "replayed")
    console.print(renderable(timeline, console.width))
    _print_verdict(console, trace, result)
    code, reason = replay_verdict(trace, result)
    if reason:
        print(f"pagemap replay: {reason}", file=sys.stderr)
    if args.html is not None:
        page = write_page(timeline, Path(args.html))
        _say(console, f"timeline page written to {page}")
    if args.json:
        doc = replay_document(args.trace, trace, result, reason, command)
        print(json.dumps(doc, indent=1))
    return code
