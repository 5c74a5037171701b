"""Counterexamples: the JSON trace, and the step-by-step table of a replay.

A trace names everything needed to rebuild the failing schedule: the
scenario and its parameters, the strategy, seed and schedule number that
found it, and the schedule itself (the task id chosen at each choice point).
Replaying it needs only the scenario and the schedule.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pagemap.hw.mmu import pte_bits
from pagemap.kernel.page import flag_names
from pagemap.kernel.pagemap import decode_slot
from pagemap.sync.atomic import AtomicWord
from pagemap.sync.executor import Task
from pagemap.sync.locks import Semaphore, SpinLock

if TYPE_CHECKING:
    from pagemap.check.runner import Model, Outcome

TRACE_VERSION = 1


@dataclass
class Trace:
    scenario: str
    params: dict[str, int]
    strategy: str
    seed: int
    schedule_index: int
    preemption_bound: int | None
    schedule: list[int]
    steps: int
    preemptions: int
    oracle: str
    message: str
    original: dict[str, int] = field(default_factory=dict)  # steps/preemptions before shrinking
    version: int = TRACE_VERSION

    @classmethod
    def from_outcome(
        cls,
        model: Model,
        strategy: str,
        seed: int,
        index: int,
        bound: int | None,
        outcome: Outcome,
    ) -> Trace:
        assert outcome.violation is not None
        return cls(
            scenario=model.name,
            params=dict(model.params),
            strategy=strategy,
            seed=seed,
            schedule_index=index,
            preemption_bound=bound,
            schedule=list(outcome.schedule),
            steps=outcome.steps,
            preemptions=outcome.preemptions,
            oracle=outcome.violation.oracle,
            message=outcome.violation.message,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        out = path / f"{self.scenario}-{self.strategy}-s{self.seed}-n{self.schedule_index}.json"
        out.write_text(self.to_json() + "\n")
        return out

    @classmethod
    def load(cls, path: str | Path) -> Trace:
        try:
            raw: Any = json.loads(Path(path).read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{path} is not a trace: not JSON ({exc.msg}, line {exc.lineno})"
            ) from None
        return cls.from_dict(raw, str(path))

    @classmethod
    def from_dict(cls, raw: Any, where: str = "trace") -> Trace:
        if not isinstance(raw, dict):
            raise ValueError(f"{where} is not a trace: expected a JSON object")
        needed = ("scenario", "params", "strategy", "seed", "schedule")
        missing = [k for k in needed if k not in raw]
        if missing:
            raise ValueError(f"{where} is not a trace: it lacks {', '.join(missing)}")
        schedule = raw["schedule"]
        if not isinstance(schedule, list) or not all(isinstance(t, int) for t in schedule):
            raise ValueError(f"{where}: 'schedule' must be a list of task ids")
        params = raw["params"]
        if not isinstance(params, dict) or not all(isinstance(v, int) for v in params.values()):
            raise ValueError(f"{where}: 'params' must map names to integers")
        return cls(
            scenario=str(raw["scenario"]),
            params={str(k): int(v) for k, v in params.items()},
            strategy=str(raw["strategy"]),
            seed=int(raw["seed"]),
            schedule_index=int(raw.get("schedule_index", 0)),
            preemption_bound=raw.get("preemption_bound"),
            schedule=list(schedule),
            steps=int(raw.get("steps", 0)),
            preemptions=int(raw.get("preemptions", 0)),
            oracle=str(raw.get("oracle", "")),
            message=str(raw.get("message", "")),
            original=dict(raw.get("original", {})),
        )


@dataclass
class Step:
    """One row of a replay: a scheduling point and what it acted on."""

    step: int
    core: int
    task: str
    operation: str
    obj: str
    slot: str = ""
    pte: str = ""
    value: str = ""


def _is_slot(word: AtomicWord) -> bool:
    return ".slot[" in word.name


def _is_pte(word: AtomicWord) -> bool:
    return "pte" in word.name.lower()


def show_word(word: AtomicWord) -> tuple[str, str, str]:
    """(slot, pte, value) columns for a word, as it is now."""
    v = word.value
    if _is_slot(word):
        return str(decode_slot(v)), "", ""
    if _is_pte(word):
        return "", pte_bits(v), ""
    if word.name.endswith(".flags"):
        return "", "", flag_names(v)
    return "", "", f"{v:#x}"


class Recorder:
    """A step hook that keeps one row per scheduling point.  The hook runs
    just before the operation, so each row's value is filled in (as
    "before -> after") when the next step comes, or at `close`."""

    def __init__(self) -> None:
        self.rows: list[Step] = []
        self._pending: tuple[Step, AtomicWord, tuple[str, str, str]] | None = None

    def __call__(self, task: Task, kind: str, obj: object) -> None:
        self._settle()
        row = Step(len(self.rows) + 1, task.core, task.name, kind, _name(obj))
        self.rows.append(row)
        if isinstance(obj, AtomicWord):
            self._pending = (row, obj, show_word(obj))
        elif isinstance(obj, SpinLock):
            row.value = "held" if obj.held else "free"
        elif isinstance(obj, Semaphore):
            row.value = f"count {obj.count}"

    def close(self) -> list[Step]:
        self._settle()
        return self.rows

    def _settle(self) -> None:
        if self._pending is None:
            return
        row, word, before = self._pending
        after = show_word(word)
        row.slot, row.pte, row.value = (_arrow(b, a) for b, a in zip(before, after, strict=True))
        self._pending = None


def _arrow(before: str, after: str) -> str:
    if before == after:
        return before
    return f"{before} -> {after}"


def _name(obj: object) -> str:
    if obj is None:
        return ""
    name = getattr(obj, "name", None)
    return name if isinstance(name, str) else type(obj).__name__
