"""What a `pagemap replay` concludes: the model a trace names (a scenario,
under its mutant if it names one, or a model of your own), the exit code and
the sentence that explains it, and the --json document.

Rules: a model of your own is imported only from the directories allowed
(check/modelpath.py; Refused otherwise).  Exit 0 the schedule holds, 1 it
fails as recorded, 3 it no longer fits the code (or fails otherwise).  The
JSON document follows replay.schema.json (REPLAY_SCHEMA).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console

from pagemap import __version__
from pagemap.check.cli.common import NO_LONGER_FITS, OK, REPLAY_SCHEMA, VIOLATION
from pagemap.check.counterexample import replay_command, timeline_of
from pagemap.check.modelpath import ModelPath
from pagemap.check.replay import Replay
from pagemap.check.runner import Model
from pagemap.check.scenarios import lookup
from pagemap.check.trace import Trace


def replay_verdict(trace: Trace, result: Replay) -> tuple[int, str]:
    """The exit code of a replay, and the sentence that explains a 3 ("" otherwise)."""
    v = result.violation
    if not result.followed:
        where = result_where(result, trace)
        return NO_LONGER_FITS, (
            f"the schedule no longer fits the code: {where}; the scenario or "
            "the kernel changed since the trace was written"
        )
    if v is None:
        return OK, ""
    if v.oracle != trace.oracle:
        return NO_LONGER_FITS, (
            f"the schedule now fails {v.oracle}, not {trace.oracle} as recorded"
        )
    return VIOLATION, ""


def replay_document(
    path: str,
    trace: Trace,
    result: Replay | None,
    reason: str,
    command: str = "",
    refused: bool = False,
) -> dict[str, Any]:
    """`replay --json`: the replay as replay.schema.json describes it."""
    if result is None:
        code, verdict = NO_LONGER_FITS, "refused" if refused else "no_longer_fits"
    else:
        code, _ = replay_verdict(trace, result)
        verdict = {OK: "holds", VIOLATION: "violation"}.get(code, "no_longer_fits")
    v = None if result is None else result.violation
    timeline = None
    if result is not None:
        how = command or replay_command(path)
        timeline = timeline_of(trace, result, how, "replayed").to_dict()
    return {
        "schema": REPLAY_SCHEMA,
        "command": "replay",
        "pagemap": __version__,
        "trace": path,
        "scenario": trace.scenario,
        "verdict": verdict,
        "exit_code": code,
        "reason": reason,
        "recorded": {"oracle": trace.oracle, "message": trace.message},
        "violation": None if v is None else {"oracle": v.oracle, "message": v.message},
        "followed": None if result is None else result.followed,
        "steps": None if result is None else result.total_steps,
        "timeline": timeline,
    }


def result_where(result: Replay, trace: Trace) -> str:
    if result.diverged:
        return "a task the trace chose could not run where it says"
    return f"the run made different choices than the {len(trace.schedule)} recorded"


def model_of(trace: Trace, allowed: ModelPath | None = None) -> tuple[Model, str]:
    """The model a trace names, and a sentence saying what differs from the
    settings it records ("" if nothing).  A model of your own is imported only
    from the directories `allowed` (check/modelpath.py; Refused otherwise)."""
    if "scenario" in trace.model:
        model: Model = lookup(trace.model["scenario"]).model(trace.params)
        if "mutant" in trace.model:
            from pagemap.check.mutants import lookup_mutant
            from pagemap.check.mutants.base import MutatedModel

            model = MutatedModel(model, lookup_mutant(str(trace.model["mutant"])))
    else:
        model = _function_model(trace, allowed or ModelPath())
    for what, recorded, now in (
        ("cores", trace.cores, model.cores),
        ("memory", trace.memory, model.memory),
    ):
        if recorded != now:
            return model, (
                f"the trace was recorded with {what}={recorded}, but {trace.scenario} now "
                f"runs with {what}={now}"
            )
    return model, ""


def _function_model(trace: Trace, allowed: ModelPath) -> Model:
    from pagemap.check.model import FunctionModel

    desc = trace.model
    if "setup" not in desc:
        raise ValueError(
            f"the trace's model {trace.scenario!r} cannot be replayed from the command line: "
            f"{desc.get('unreplayable', 'it names no import path')}"
        )
    check = [desc["check"]] if desc.get("check") else []
    setup, *functions = allowed.resolve([desc["setup"], *desc["tasks"], *check])
    tasks = functions[: len(desc["tasks"])]
    return FunctionModel(
        str(desc.get("name", "model")),
        setup,
        tuple(tasks),
        functions[len(desc["tasks"])] if check else None,
        trace.cores,
        trace.memory,
        bool(desc.get("quiescent", True)),
    )


def _print_verdict(console: Console, trace: Trace, result: Replay) -> None:
    """What the timeline does not say: that a replay no longer fails."""
    if result.violation is None:
        console.print(
            f"[green]no violation on replay[/green] (the trace recorded {trace.oracle}: "
            f"{trace.message})",
            soft_wrap=True,
            highlight=False,
        )
