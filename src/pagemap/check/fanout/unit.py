"""What crosses between the driver and a worker: units of work and what they report.

A `Unit` names everything a worker needs from names and numbers alone,
never code: the model (a scenario's name and parameters, or a model of your
own by the import paths of its functions, `ModelRef`), the strategy and its
settings, and which part of the exploration:

- random and PCT: schedule numbers `first` .. `first + budget` (schedule i
  depends only on the seed and i);
- DFS and DPOR: a subtree of the search (`part`: the choices down to a
  node, and the alternatives to try there; check/strategies/subtree.py),
  which the worker explores for at most `split` schedules before handing
  back what is left of it as new units.

A worker answers with `Tick`s, one per schedule run, in order, and one
`End`.  Everything here pickles as plain data and has a JSON form.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pagemap.check.model import FunctionModel, resolve
from pagemap.check.runner import Model
from pagemap.check.scenarios import lookup
from pagemap.check.strategies.subtree import Frozen, Request, Subtree
from pagemap.check.trace import Trace


@dataclass(frozen=True)
class ModelRef:
    """A model of your own, by the import paths ("pkg.mod:name") of its
    functions: what `explore` takes (check/model.py), rebuilt in the worker."""

    name: str
    setup: str
    tasks: tuple[str, ...]
    check: str | None = None
    cores: int = 2
    memory: int = 16 * 4096
    quiescent: bool = True

    def model(self) -> Model:
        return FunctionModel(
            self.name,
            resolve(self.setup),
            tuple(resolve(t) for t in self.tasks),
            resolve(self.check) if self.check else None,
            self.cores,
            self.memory,
            self.quiescent,
        )


@dataclass(frozen=True)
class Unit:
    """Part of an exploration a worker can run from names and numbers alone."""

    scenario: str
    params: tuple[tuple[str, int], ...]
    strategy: str
    seed: int
    bound: int | None
    depth: int
    max_steps: int
    first: int = 0
    budget: int | None = None  # schedules of this unit (random, PCT); None: to the end
    time_limit: float | None = None  # seconds of this unit
    phase: str = ""  # "pct" for the portfolio's first pass, "" otherwise
    part: Subtree = field(default_factory=Subtree)
    split: int | None = None  # DFS, DPOR: hand back the rest after this many schedules
    functions: ModelRef | None = None  # a model of your own instead of a scenario
    timeout: float | None = None  # seconds after which the unit is given up as timed out

    def model(self) -> Model:
        if self.functions is not None:
            return self.functions.model()
        return lookup(self.scenario).model(dict(self.params))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Unit:
        part = raw.get("part") or {}
        sleep = tuple((t, _tuples(fp)) for t, fp in part.get("sleep", ()))
        fns = raw.get("functions")
        return cls(
            **{
                **raw,
                "params": tuple((k, v) for k, v in raw["params"]),
                "part": Subtree(
                    tuple(part.get("prefix", ())),
                    part.get("alts", 0),
                    sleep,
                    part.get("conservative", 0),
                ),
                "functions": _model_ref(fns),
            }
        )


def _model_ref(raw: dict[str, Any] | None) -> ModelRef | None:
    return None if raw is None else ModelRef(**{**raw, "tasks": tuple(raw["tasks"])})


def _tuples(value: Any) -> Any:
    """JSON arrays back to the tuples a footprint is made of."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


class Tick(NamedTuple):
    """One schedule a unit ran: its steps, whether it counted as distinct
    (a new Mazurkiewicz trace for DPOR, a new schedule otherwise), whether
    DPOR cut it short as a reordering, the races it showed, what it asked of
    the frozen nodes above the unit, whether the unit ended there, its
    seconds, and (DPOR, run to its end) the key of its Mazurkiewicz trace,
    by which the ledger counts traces across units: two subtrees may run
    schedules of one trace."""

    steps: int
    fresh: bool
    redundant: bool
    races: int
    requests: tuple[Request, ...] = ()
    last: bool = False  # the unit ended with this schedule (its End says how)
    seconds: float = 0.0
    trace: int | None = None  # strategies/search.py trace_key, DPOR only


# How a unit ended.
EXHAUSTED = "exhausted"  # its part of the space is covered
SPENT = "spent"  # its budget of schedules is run
SPLIT = "split"  # it handed back the rest as new units
VIOLATION = "violation"  # its last schedule broke an oracle
OUT_OF_TIME = "out of time"  # its time limit (--time) is up
TIMED_OUT = "timed out"  # it ran longer than the unit timeout
STOPPED = "stopped"  # the exploration was stopped


@dataclass(frozen=True)
class End:
    reason: str
    seconds: float
    trace: Trace | None = None
    children: tuple[Unit, ...] = ()  # SPLIT: the rest, as units
    frozen: tuple[Frozen, ...] = ()  # SPLIT: the nodes those units freeze


@dataclass(frozen=True)
class Batch:
    """Ticks `first` .. of unit `uid`, and its End once it ended."""

    uid: int
    first: int
    ticks: tuple[Tick, ...]
    end: End | None = None


__all__ = [
    "EXHAUSTED",
    "OUT_OF_TIME",
    "SPENT",
    "SPLIT",
    "STOPPED",
    "TIMED_OUT",
    "VIOLATION",
    "Batch",
    "End",
    "ModelRef",
    "Tick",
    "Unit",
]
