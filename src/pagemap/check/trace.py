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
from pagemap.kernel.slot import decode_slot
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
    """One row per scheduling point, in the order the operations take effect.

    The step hook runs at a task's scheduling point, before its operation,
    and the operation takes effect when the task next runs: at once, unless
    the strategy switches away there.  So the recorder also watches greenlet
    switches (`on_switch`, installed with greenlet.settrace during a replay):
    a row is placed when its task actually goes on, its "before" value taken
    then, and its "after" value when the task next stops.
    """

    def __init__(self) -> None:
        self.rows: list[Step] = []
        self._pending: dict[int, _Pending] = {}
        self._tasks: dict[object, Task] = {}

    def __call__(self, task: Task, kind: str, obj: object) -> None:
        self._tasks[task.glet] = task
        old = self._pending.pop(task.tid, None)
        if old is not None:
            self._place(old)
            old.settle()
        self._pending[task.tid] = _Pending(
            task, Step(0, task.core, task.name, kind, _name(obj)), obj
        )

    def on_switch(self, event: str, args: tuple[object, object]) -> None:
        origin, target = args
        out = self._tasks.get(origin)
        if out is not None and (p := self._pending.get(out.tid)) is not None:
            # Stopped at its point by the strategy: the operation is still to come.
            # Blocked or finished: it happened (a blocked one waits inside it).
            preempted = not p.placed and not out.done and out.waiting_on is None
            if not preempted:
                self._place(p)
                p.settle()
        into = self._tasks.get(target)
        if into is not None and (p := self._pending.get(into.tid)) is not None and not p.placed:
            p.refresh()
            self._place(p)

    def close(self) -> list[Step]:
        for tid in sorted(self._pending):
            p = self._pending[tid]
            self._place(p)
            p.settle()
        self._pending.clear()
        return self.rows

    def _place(self, p: _Pending) -> None:
        if not p.placed:
            p.placed = True
            p.row.step = len(self.rows) + 1
            self.rows.append(p.row)


class _Pending:
    """A row whose operation may not have happened yet."""

    def __init__(self, task: Task, row: Step, obj: object) -> None:
        self.task = task
        self.row = row
        self.obj = obj
        self.placed = False
        self.before = self._show()

    def _show(self) -> tuple[str, str, str]:
        obj = self.obj
        if isinstance(obj, AtomicWord):
            return show_word(obj)
        if isinstance(obj, SpinLock):
            holder = getattr(obj, "holder", None)
            who = getattr(holder, "name", "?")
            return "", "", f"held by {who}" if obj.held else "free"
        if isinstance(obj, Semaphore):
            return "", "", f"count {obj.count}"
        return "", "", ""

    def refresh(self) -> None:
        self.before = self._show()

    def settle(self) -> None:
        after = self._show()
        self.row.slot, self.row.pte, self.row.value = (
            _arrow(b, a) for b, a in zip(self.before, after, strict=True)
        )


def _arrow(before: str, after: str) -> str:
    if before == after:
        return before
    return f"{before} -> {after}"


def _name(obj: object) -> str:
    if obj is None:
        return ""
    if isinstance(obj, int):
        return f"frame {obj}"  # the MMU names a frame by its ppn
    ppn = getattr(obj, "ppn", None)
    if isinstance(ppn, int):
        return f"page[{ppn}]"
    name = getattr(obj, "name", None)
    return name if isinstance(name, str) else type(obj).__name__
