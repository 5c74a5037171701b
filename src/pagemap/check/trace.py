"""Counterexamples: the JSON trace (its rows, when replayed, come from check/recorder.py).

A trace stands alone: it names everything replay needs to rebuild the
failing schedule, and replay checks each of them (check/replay.py).

    schema, pagemap        the trace format's version, and the pagemap that wrote it
    model                  {"scenario": NAME} or, for a model of your own,
                           {"setup": "pkg.mod:name", "tasks": [...], "check": ...}
    params, cores, memory  the scenario's parameters and the machine's size
    max_steps              the step budget per schedule
    strategy, seed, schedule_index, preemption_bound
                           how the exploration found it
    schedule               the task chosen at each choice point, as a schedule
                           string ("0*3.1.0*2", check/path.py)
    steps, preemptions     of the schedule
    oracle, message        the violation
    shrunk_from            steps and preemptions before shrinking, if it shrank
    livelock               for a step-budget violation: the steps before the
                           cycle and the length of one turn of it, if one was found
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pagemap.check.path import decode_schedule, encode_schedule

if TYPE_CHECKING:
    from pagemap.check.outcome import Model, Outcome

TRACE_SCHEMA = 2


def _version() -> str:
    from pagemap import __version__

    return __version__


class TraceError(ValueError):
    """A file that is not a trace this pagemap can replay (bad input: exit 2)."""


@dataclass
class Trace:
    model: dict[str, Any]
    params: dict[str, int]
    cores: int
    memory: int
    max_steps: int
    strategy: str
    seed: int
    schedule_index: int
    preemption_bound: int | None
    schedule: list[int]
    steps: int
    preemptions: int
    oracle: str
    message: str
    shrunk_from: dict[str, int] = field(default_factory=dict)
    livelock: dict[str, int] = field(default_factory=dict)
    schema: int = TRACE_SCHEMA
    pagemap: str = field(default_factory=_version)

    @property
    def scenario(self) -> str:
        """The scenario's name, or the model's name for a model of your own."""
        return str(self.model.get("scenario") or self.model.get("name") or "model")

    @classmethod
    def from_outcome(
        cls,
        model: Model,
        strategy: str,
        seed: int,
        index: int,
        bound: int | None,
        max_steps: int,
        outcome: Outcome,
    ) -> Trace:
        assert outcome.violation is not None
        describe = getattr(model, "describe", None)
        ident: dict[str, Any] = describe() if describe is not None else {"name": model.name}
        return cls(
            model=ident,
            params=dict(model.params),
            cores=model.cores,
            memory=model.memory,
            max_steps=max_steps,
            strategy=strategy,
            seed=seed,
            schedule_index=index,
            preemption_bound=bound,
            schedule=list(outcome.path.choices),
            steps=outcome.steps,
            preemptions=outcome.path.preemptions,
            oracle=outcome.violation.oracle,
            message=outcome.violation.message,
        )

    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["schedule"] = encode_schedule(self.schedule)
        if not self.shrunk_from:
            del raw["shrunk_from"]
        if not self.livelock:
            del raw["livelock"]
        order = ["schema", "pagemap", "model", "params", "cores", "memory", "max_steps"]
        return {k: raw[k] for k in order} | {k: v for k, v in raw.items() if k not in order}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def save(self, directory: str | Path) -> Path:
        """Write the trace under `directory`, never over another trace."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        stem = f"{self.scenario}-{self.strategy}-s{self.seed}-n{self.schedule_index}"
        n = 0
        while True:
            out = path / (f"{stem}.json" if n == 0 else f"{stem}-{n}.json")
            try:
                with open(out, "x") as f:
                    f.write(self.to_json() + "\n")
                return out
            except FileExistsError:
                n += 1

    @classmethod
    def load(cls, path: str | Path) -> Trace:
        from pagemap.check.schema import MAX_TRACE_BYTES, SchemaError, read_json

        try:
            raw: Any = read_json(str(path), MAX_TRACE_BYTES)
        except OSError as exc:
            raise TraceError(f"{path}: cannot read the trace: {exc.strerror or exc}") from None
        except SchemaError as exc:
            raise TraceError(str(exc)) from None
        return cls.from_dict(raw, str(path))

    @classmethod
    def from_dict(cls, raw: Any, where: str = "trace") -> Trace:
        """A trace from its JSON form, checked field by field (TraceError says
        which field is wrong and how)."""
        check_trace(raw, where)
        try:
            schedule = decode_schedule(raw["schedule"])
        except ValueError as exc:
            raise TraceError(f"{where}: 'schedule': {exc}") from None
        return cls(
            model=dict(raw["model"]),
            params={str(k): int(v) for k, v in raw["params"].items()},
            cores=raw["cores"],
            memory=raw["memory"],
            max_steps=raw["max_steps"],
            strategy=raw["strategy"],
            seed=raw["seed"],
            schedule_index=raw["schedule_index"],
            preemption_bound=raw["preemption_bound"],
            schedule=schedule,
            steps=raw["steps"],
            preemptions=raw["preemptions"],
            oracle=raw["oracle"],
            message=raw["message"],
            shrunk_from=dict(raw.get("shrunk_from", {})),
            livelock=dict(raw.get("livelock", {})),
            schema=raw["schema"],
            pagemap=raw["pagemap"],
        )


def check_trace(raw: Any, where: str) -> None:
    """TraceError unless `raw` is a trace of this schema that follows
    check/schemas/trace.schema.json, with integers for numbers."""
    from pagemap.check.schema import SchemaError, first_float, validate

    if not isinstance(raw, dict):
        raise TraceError(f"{where} is not a trace: expected a JSON object")
    version = raw.get("schema", raw.get("version"))
    if version != TRACE_SCHEMA:
        raise TraceError(
            f"{where}: trace schema {version!r} is not the one this pagemap reads "
            f"({TRACE_SCHEMA}); re-run the exploration that found it"
        )
    try:
        validate(raw, "trace", where)
        found = first_float(raw)
    except SchemaError as exc:
        raise TraceError(str(exc)) from None
    except RecursionError:
        raise TraceError(f"{where}: nested too deeply to be a trace") from None
    if found is not None:
        raise TraceError(f"{where}: {found}: a number in a trace is an integer, not a float")
