"""Counterexamples: the JSON trace, and the step-by-step table of a replay.

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
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pagemap.check.path import decode_schedule, encode_schedule
from pagemap.hw.mmu import pte_bits
from pagemap.kernel.page import flag_names
from pagemap.kernel.slot import decode_slot
from pagemap.sync.arrays import AtomicArray, LockTable
from pagemap.sync.atomic import Word
from pagemap.sync.core import RELAX, START
from pagemap.sync.locks import Semaphore, SpinLock
from pagemap.sync.sim import SimExecutor

if TYPE_CHECKING:
    from pagemap.check.runner import Model, Outcome

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
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise TraceError(f"{path}: cannot read the trace: {exc.strerror or exc}") from None
        try:
            raw: Any = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TraceError(
                f"{path} is not a trace: not JSON ({exc.msg}, line {exc.lineno})"
            ) from None
        return cls.from_dict(raw, str(path))

    @classmethod
    def from_dict(cls, raw: Any, where: str = "trace") -> Trace:
        """A trace from its JSON form, checked field by field (TraceError says
        which field is wrong and how)."""
        from pagemap.check.schema import check_trace

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


@dataclass
class Step:
    """One row of a replay: a step, what it acted on, and where in the code."""

    step: int
    core: int
    task: str
    operation: str
    obj: str
    slot: str = ""
    pte: str = ""
    value: str = ""
    location: str = ""  # file:line function, of the kernel code that took the step
    seed_function: str = ""  # the C function of the seed it ports, if any
    preempted: bool = False  # the step follows a preemption
    failing: bool = False  # the oracle's message is about this step


def _is_slot(name: str) -> bool:
    return ".slot[" in name or name.startswith("pm.slot")


def _is_pte(name: str) -> bool:
    return "pte" in name.lower()


def show_value(name: str, v: int) -> tuple[str, str, str]:
    """(slot, pte, value) columns for a word called `name` holding `v`."""
    if _is_slot(name):
        return str(decode_slot(v)), "", ""
    if _is_pte(name):
        return "", pte_bits(v), ""
    if name.endswith(".flags") or name.startswith("page.flags"):
        return "", "", flag_names(v)
    return "", "", f"{v:#x}"


def show_word(word: Word) -> tuple[str, str, str]:
    """(slot, pte, value) columns for a word, as it is now."""
    return show_value(word.name, word.value)


def show(obj: object, keyed: Mapping[str, object] | None = None) -> tuple[str, str, str]:
    """(slot, pte, value) columns for any footprint object, as it is now;
    `keyed` resolves a `(name, i)` footprint to its array or lock table."""
    if isinstance(obj, Word):
        return show_word(obj)
    if type(obj) is tuple and keyed is not None:
        table = keyed.get(obj[0])
        if isinstance(table, AtomicArray):
            return show_value(obj[0], table.value(obj[1]))
        if isinstance(table, LockTable):
            return "", "", f"count {table.count(obj[1])}"
        return "", "", ""
    if isinstance(obj, SpinLock):
        holder = getattr(obj, "holder", None)
        who = getattr(holder, "name", "?")
        return "", "", f"held by {who}" if obj.held else "free"
    if isinstance(obj, Semaphore):
        return "", "", f"count {obj.count}"
    return "", "", ""


# Methods of kernel/pagemap.py and the seed's C functions they port (docs/seed.md).
SEED_FUNCTIONS = {
    "add_vmr": "pm_add_vmr",
    "remove_vmr": "pm_remove_vmr",
    "_find_page": "pm_find_page",
    "find_page": "pm_find_page",
    "_insert_page": "pm_insert_page",
    "put_page": "pm_put_page",
    "load_page": "pm_load_page",
    "_read_locked_page": "pm_load_page",
    "remove_contig": "pm_remove_contig",
    "_remove_contig": "pm_remove_contig",
    "_mark_for_removal": "pm_remove_contig",
    "_unmap_marked": "pm_remove_contig",
    "_pte_mark_not_present": "__pm_mark_not_present",
    "_pte_unmap_keep_dirty": "__pm_mark_dirty_pgs_unmap",
    "_shootdown_and_reset": "shootdown_and_reset_ptrstore",
    "_write_back_marked": "pm_remove_contig",
    "_marked_page": "pm_remove_contig",
    "_free_marked": "pm_remove_contig",
    "info": "print_page_map_info",
}

_SKIP = ("/pagemap/sync/", "/pagemap/check/trace.py", "/pagemap/check/replay.py")


def where(depth: int = 2) -> tuple[str, str]:
    """(file:line function, seed function) of the innermost frame outside the
    executor, for the step being logged now."""
    frame = sys._getframe(depth)
    while frame is not None and any(s in frame.f_code.co_filename for s in _SKIP):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return "", ""
    filename = frame.f_code.co_filename
    cut = filename.rfind("/pagemap/")
    short = filename[cut + len("/pagemap/") :] if cut >= 0 else os.path.basename(filename)
    func = frame.f_code.co_qualname
    seed = ""
    if short == "kernel/pagemap.py":
        seed = SEED_FUNCTIONS.get(frame.f_code.co_name, "")
    return f"{short}:{frame.f_lineno} {func}", seed


class Recorder:
    """One row per step, in the order the steps took effect.

    Installed as the SimExecutor's `on_event` during a replay: a row is made
    as each step is logged (its "before" value read then), and settled (its
    "after" value read) when the next step begins, since only that one step
    ran in between.
    """

    def __init__(self, sched: SimExecutor) -> None:
        self.sched = sched
        self.rows: list[Step] = []
        self._last: tuple[Step, object, tuple[str, str, str]] | None = None
        self._preempting: set[int] = set()

    def __call__(self, i: int) -> None:
        self._settle()
        sched = self.sched
        log = sched.log
        assert log is not None
        if log.kinds[i] is START:
            # A task beginning: no operation to show; a preemption that let it
            # begin shows on its first operation.
            if self._preempted(i):
                self._preempting.add(log.tids[i])
            return
        tid = log.tids[i]
        task = sched.tasks[tid]
        obj = log.objs[i]
        location, seed = where(3)
        row = Step(
            len(self.rows) + 1,
            task.core,
            task.name,
            log.kinds[i],
            _name(obj),
            location=location,
            seed_function=seed,
            preempted=self._preempted(i) or tid in self._preempting,
        )
        self._preempting.discard(tid)
        self.rows.append(row)
        self._last = (row, obj, show(obj, sched.keyed))

    def _preempted(self, i: int) -> bool:
        log = self.sched.log
        assert log is not None
        if i == 0:
            return False
        prev = log.tids[i - 1]
        if prev == log.tids[i] or not log.enabled[i] >> prev & 1:
            return False
        before = self.sched.tasks[prev]
        return not before.done and before.kind != RELAX

    def _settle(self) -> None:
        if self._last is None:
            return
        row, obj, before = self._last
        after = show(obj, self.sched.keyed)
        row.slot, row.pte, row.value = (_arrow(b, a) for b, a in zip(before, after, strict=True))
        self._last = None

    def close(self) -> list[Step]:
        self._settle()
        return self.rows


def _arrow(before: str, after: str) -> str:
    if before == after:
        return before
    return f"{before} -> {after}"


def _name(obj: object) -> str:
    if obj is None:
        return ""
    if type(obj) is tuple:
        return f"{obj[0]}[{', '.join(str(x) for x in obj[1:])}]"
    if isinstance(obj, int):
        return f"frame {obj}"  # a footprint int names a frame by its ppn
    ppn = getattr(obj, "ppn", None)
    if isinstance(ppn, int):
        return f"page[{ppn}]"
    name = getattr(obj, "name", None)
    return name if isinstance(name, str) else type(obj).__name__
