"""`pagemap check --mutants --auto`: every lock of kernel/ not taken, one at a time.

The lock mutants are generated (check/mutants/auto.py), one per lock-like
item of a `with` in kernel/; each runs against the scenarios that call its
function (check/mutants/auto_map.py; the default set and the zoo's rows,
fixes on: `mutant_scenarios`), best first, each under the default
portfolio (PCT, then DPOR to the end: `plan`), in that order, stopping at the
first kill or after `--mutant-time` seconds.  The mutant is run as the
hand-written ones are (cli/mutants.py's run_against); with --jobs each worker
process runs one mutant at a time.

The table: site, line, the killer (scenario, oracle, schedules, seconds) or
why it survived, and the site's category as the census of the unmutated
kernel measured it (check/mutants/auto_census.py, over the same runs that map
the scenarios): atomic in the model (no task reaches a point holding the
lock: the checker cannot see the mutant), never contended (no two tasks take
the lock: a gap of the scenarios), or raced.  Only a raced survivor is
unexplained; it is excused by an entry of check/mutants/auto_equivalent.txt,
`NAME  # reason` (the reason says which lock or fact makes the missing one
harmless, or why no scenario can race it); an entry that names no site, or a
site that was killed, is stale.  Exit 0 unless an unexplained survivor is not
listed or an entry is stale: the other survivors are reported as what they
are, counted and listed.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from typing import Any

from rich.console import Console
from rich.table import Table

from pagemap.check.cli.common import OK, VIOLATION, _progress, _say, _why, plural
from pagemap.check.fanout import Stop, Unit
from pagemap.check.mutants.auto_census import (
    ATOMIC,
    CENSUS_RUNS,
    LABELS,
    RACED,
    UNCONTENDED,
    Census,
)
from pagemap.check.runner import Model
from pagemap.check.scenario import Scenario
from pagemap.check.workers import Pool, Progress, Stopped, WorkerFailed

Plan = Callable[[argparse.Namespace, Mapping[str, Model]], list[Unit]]


def load_equivalents(text: str) -> dict[str, str]:
    """name -> reason, from the lines `NAME  # reason` (blank and # lines skipped)."""
    out: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, hash_, reason = line.partition("  # ")
        if not hash_ or not name.strip() or not reason.strip():
            raise ValueError(
                f"auto_equivalent.txt line {n}: expected 'NAME  # REASON', not {raw!r}"
            )
        out[name.strip()] = reason.strip()
    return out


def mutant_scenarios() -> dict[str, Scenario]:
    """The scenarios a lock mutant is tried against: the default set, then
    the zoo, each row at its defaults (its fix on: the real kernel).  A row
    races one path on purpose, and some paths only a row races:
    known-mkclean-skip is where page_mkclean meets mprotect's PTE, not present
    for an instant."""
    from pagemap.check.scenarios import registry, zoo

    return {**registry(), **zoo()}


def default_equivalents() -> dict[str, str]:
    text = resources.files("pagemap.check.mutants").joinpath("auto_equivalent.txt").read_text()
    return load_equivalents(text)


def _auto_mutants(console: Console, args: argparse.Namespace, plan: Plan) -> int:
    from pagemap.check.cli.mutants import run_against
    from pagemap.check.mutants.auto import generate
    from pagemap.check.mutants.auto_map import scenario_map
    from pagemap.check.scenarios import lookup

    t0 = time.perf_counter()
    mutants, skipped = generate()
    known = {m.name for m in mutants} | {s.site.name for s in skipped}
    if args.mutant:
        unknown = [n for n in args.mutant if n not in known]
        if unknown:
            raise ValueError(f"no lock mutant {unknown[0]!r} (`--mutants --auto` lists them)")
        mutants = [m for m in mutants if m.name in args.mutant]
    equivalents = default_equivalents()
    census = Census(mutants)
    where = scenario_map(mutant_scenarios(), census.observe, CENSUS_RUNS)
    todo: list[tuple[Any, list[str], list[Unit]]] = []
    for m in mutants:
        names = where.get((m.function.__code__.co_filename, m.site.first_line), [])
        units = [u for n in names for u in plan(args, {n: lookup(n).model()})]
        todo.append((m, names, units))
    limit = args.mutant_time
    ran = [i for i, (_, _, units) in enumerate(todo) if units]
    jobs = min(args.jobs, max(1, len(ran)))
    stop = Stop()
    try:
        with _progress(
            console, "pagemap check --mutants --auto", "running each lock mutant ..."
        ) as say:

            def told(done: int, total: int, index: int) -> None:
                name = todo[ran[index]][0].name
                say(f"{name} run ({done} of {total}, {time.perf_counter() - t0:.1f} s)")

            if jobs == 1:
                answers = []
                for i, k in enumerate(ran):
                    answers.append(run_against(todo[k][0], todo[k][2], limit))
                    told(i + 1, len(ran), i)
            else:
                with stop.on_signals():
                    answers = _in_workers([todo[k] for k in ran], limit, jobs, told, stop)
    except Stopped as exc:
        _say(console, f"STOPPED by {_why(stop)}: {exc.done} of {len(ran)} run; no table")
        return stop.exit_code
    runs = [_unrun() for _ in todo]
    for k, answer in zip(ran, answers, strict=True):
        runs[k] = answer
    seconds = time.perf_counter() - t0
    return _table(console, todo, runs, census, skipped, equivalents, known, seconds, limit)


def _unrun() -> dict[str, Any]:
    return {"scenario": None, "oracle": None, "message": None, "schedules": 0,
            "seconds": 0.0, "scenarios": [], "limited": False}  # fmt: skip


def _table(
    console: Console,
    todo: Sequence[tuple[Any, list[str], list[Unit]]],
    runs: Sequence[dict[str, Any]],
    census: Census,
    skipped: Sequence[Any],
    equivalents: dict[str, str],
    known: set[str],
    seconds: float,
    limit: float,
) -> int:
    table = Table(title="pagemap check --mutants --auto: a lock not taken")
    for col in ("site", "line", "killed by", "oracle", "schedules", "seconds", "census"):
        table.add_column(
            col, justify="right" if col in ("line", "schedules", "seconds") else "left"
        )
    by: dict[str, list[str]] = {ATOMIC: [], UNCONTENDED: [], RACED: []}
    unexplained, excused, stale, killed = [], [], [], 0
    for n, ((m, names, _), run) in enumerate(zip(todo, runs, strict=True)):
        section = census.sections[n]
        if run["scenario"] is not None:
            killed += 1
            verdict, oracle = f"[green]{run['scenario']}[/green]", str(run["oracle"])
            if m.name in equivalents:
                stale.append(m.name)
        else:
            why = (
                "no scenario calls it"
                if not names
                else f"time limit, {len(run['scenarios'])} of {len(names)} scenarios run"
                if run["limited"]
                else f"{len(names)} scenarios"
            )
            oracle = ""
            by[section.category].append(m.name)
            if m.name in equivalents:
                excused.append(m.name)
                verdict = f"[yellow]equivalent[/yellow] ({why})"
            elif section.category == RACED:
                unexplained.append(m.name)
                verdict = f"[red]SURVIVED[/red] ({why})"
            else:
                verdict = f"[yellow]survived[/yellow] ({why})"
        table.add_row(
            m.name,
            str(m.site.line),
            verdict,
            oracle,
            f"{run['schedules']:,}",
            f"{run['seconds']:.1f}",
            f"{LABELS[section.category]}: {section.describe()}",
        )
    console.print(table)
    for s in skipped:
        _say(console, f"skipped {s.site.name} (line {s.site.line}): {s.reason}")
    stale += [n for n in equivalents if n not in known]
    for n in stale:
        _say(console, f"stale entry of auto_equivalent.txt: {n} (killed, or no such site)")
    for category, label in LABELS.items():
        if by[category]:
            _say(console, f"{label}: " + ", ".join(by[category]))
    _say(
        console,
        f"{plural(len(todo), 'lock mutant')} ({len(skipped)} skipped), in {seconds:.0f} s "
        f"(at most {limit:g} s each): {killed} killed, {len(by[ATOMIC])} atomic in the model "
        f"(the checker cannot see these), {len(by[UNCONTENDED])} never contended (a scenario "
        f"gap), {len(by[RACED])} unexplained; {len(excused)} of the survivors listed in "
        "auto_equivalent.txt",
    )
    if unexplained or stale:
        if unexplained:
            _say(console, "unexplained survivors not listed: " + ", ".join(unexplained))
        return VIOLATION
    return OK


# A --mutants --auto worker: it makes the lock mutants once, then runs one per line.
_AUTO_WORKER = """
from pagemap.check.cli.mutants import run_against
from pagemap.check.fanout import Unit
from pagemap.check.mutants.auto import generate
mutants = {m.name: m for m in generate()[0]}
for line in sys.stdin:
    item = json.loads(line)
    units = [Unit.from_json(u) for u in item["units"]]
    answer(run_against(mutants[item["mutant"]], units, item["time_limit"]))
"""


def _in_workers(
    todo: Sequence[tuple[Any, list[str], list[Unit]]],
    limit: float,
    jobs: int,
    told: Progress,
    stop: Stop,
) -> list[dict[str, Any]]:
    items = [
        {"mutant": m.name, "units": [u.to_json() for u in units], "time_limit": limit}
        for m, _, units in todo
    ]
    with Pool(_AUTO_WORKER, [[] for _ in range(jobs)]) as pool:
        try:
            runs: list[dict[str, Any]] = pool.map(items, told, stop)
            pool.finish()
        except WorkerFailed as exc:
            raise RuntimeError(f"the lock mutants run failed: {exc}") from None
    return runs
