"""The timeline of one schedule: what the report renderers draw.

A Timeline is plain data, independent of the checker's engine: whoever replays a
schedule fills one in, and the renderers (timeline.py for a browser, text.py for a
terminal) only read it.  It round-trips through JSON unchanged.

Rules: rows are in the order their operations took effect, with strictly
increasing step numbers from 1; tasks have distinct names and tids; every row's
core is below `cores` and its task is one of `tasks`; `data` is hex.
`validate()` checks all of that and raises BadTimeline (EINVAL, with a sentence
naming the field); `from_json` and both renderers call it, so a malformed
timeline never renders half a page.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from pagemap.kernel.errors import InvalidArgument

TIMELINE_VERSION = 1
RAN_SHOWN = 3  # functions a step ran named on its row; the rest counted


class BadTimeline(InvalidArgument):
    """A timeline (or its JSON) breaks the rules above (EINVAL)."""


@dataclass
class TaskInfo:
    """One task of the schedule and the core it runs on."""

    tid: int
    name: str
    core: int


@dataclass
class Row:
    """One step: a scheduling point of one task, after its operation took effect.

    slot, flags, pte and value read "before -> after" when the step changed them,
    or just the value when it only read it; "" when the step did not touch one.
    """

    step: int
    core: int
    task: str
    operation: str  # the scheduling point's kind: "cas", "lock", "frame.store", ...
    obj: str  # what it acts on: "pm.slot[0]", "page[7].flags", "tlb[1]", ...
    slot: str = ""  # a slot word decoded as refcount|R|ppn
    flags: str = ""  # page flags decoded as UPTODATE|DIRTY|...
    pte: str = ""  # a PTE decoded as ppn=N:P|W|U|A|D
    value: str = ""  # any other word, lock or semaphore
    location: str = ""  # "kernel/pagemap.py:412 PageMap._find_page"
    seed_function: str = ""  # the seed's C function this code ports, or ""
    preempted: bool = False  # the scheduler switched here from a task that could go on
    failing: bool = False  # the oracle's message is about this step
    data: str = ""  # bytes stored to a frame or written to the host, as hex
    state: dict[str, str] = field(default_factory=dict)  # the machine after this step
    note: str = ""  # what it did to another task's work: "overwrote step 3's store of 1"
    racing: bool = False  # one of the pair of racing steps the violation turns on
    also_racing: bool = False  # a step of another race whose swap makes the run pass
    # The kernel functions the step ran after its point, before its task's next
    # one ("PageMap._writeback_page"), first entered first; not its own location's
    # function, nor the one its task's next step is taken in.
    ran: list[str] = field(default_factory=list)


@dataclass
class Verdict:
    """The oracle that failed, in words, and how to see it again."""

    oracle: str
    message: str
    replay_command: str = ""


@dataclass
class Timeline:
    title: str  # in words: "store-remove: a counterexample"
    cores: int
    tasks: list[TaskInfo]
    rows: list[Row]
    verdict: Verdict | None = None  # None: the schedule broke no oracle
    summary: str = ""  # one line under the title: how it was found, its size
    initial: dict[str, str] = field(default_factory=dict)  # the machine before step 1
    version: int = TIMELINE_VERSION
    # The races the violation turns on, in words (check/explain.py), or "":
    # the named race's sentence, then, when others decide it too, a line
    # "N more races decide it too:" and a "- ..." line each (the page lists them).
    race: str = ""

    # -- derived views ------------------------------------------------------------

    @property
    def failing_steps(self) -> list[int]:
        return [r.step for r in self.rows if r.failing]

    @property
    def racing_steps(self) -> list[int]:
        return [r.step for r in self.rows if r.racing]

    @property
    def also_racing_steps(self) -> list[int]:
        return [r.step for r in self.rows if r.also_racing]

    @property
    def preemptions(self) -> int:
        return sum(1 for r in self.rows if r.preempted)

    def tasks_on(self, core: int) -> list[TaskInfo]:
        return [t for t in self.tasks if t.core == core]

    def state_before(self, i: int) -> dict[str, str]:
        """The machine's state before rows[i]: the previous row's, or `initial`."""
        return self.rows[i - 1].state if i > 0 else self.initial

    # -- rules ----------------------------------------------------------------------

    def validate(self) -> None:
        """Raise BadTimeline naming the first broken rule (see the module's rules)."""
        if self.cores < 1:
            raise BadTimeline(f"a timeline needs at least one core, not {self.cores}")
        names: set[str] = set()
        tids: set[int] = set()
        for i, t in enumerate(self.tasks):
            where = f"tasks[{i}] ({t.name})"
            _core_in_range(where, t.core, self.cores)
            if t.name in names or t.tid in tids:
                raise BadTimeline(f"{where}: another task has the same name or tid {t.tid}")
            names.add(t.name)
            tids.add(t.tid)
        last = 0
        for i, r in enumerate(self.rows):
            where = f"rows[{i}] (step {r.step})"
            if r.step <= last:
                raise BadTimeline(
                    f"{where}: step numbers must increase, and {r.step} follows {last}"
                )
            last = r.step
            _core_in_range(where, r.core, self.cores)
            if r.task not in names:
                raise BadTimeline(f"{where}: task {r.task!r} is not among the timeline's tasks")
            if not _is_hex(r.data):
                raise BadTimeline(f"{where}: data must be hex bytes, not {r.data[:20]!r}")

    # -- JSON ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        self.validate()
        return asdict(self)

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str, where: str = "timeline") -> Timeline:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadTimeline(
                f"{where} is not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
            ) from None
        return cls.from_dict(raw, where)

    @classmethod
    def from_dict(cls, raw: Any, where: str = "timeline") -> Timeline:
        top = _Fields(raw, where, _TIMELINE_FIELDS)
        version = top.get("version", int, TIMELINE_VERSION)
        if version > TIMELINE_VERSION:
            raise BadTimeline(
                f"{where} is timeline version {version}; this pagemap reads up to "
                f"version {TIMELINE_VERSION}"
            )
        verdict_raw = top.raw.get("verdict")
        timeline = cls(
            title=top.need("title", str),
            cores=top.need("cores", int),
            tasks=[_task(t, f"{where}: tasks[{i}]") for i, t in enumerate(top.need("tasks", list))],
            rows=[_row(r, f"{where}: rows[{i}]") for i, r in enumerate(top.need("rows", list))],
            verdict=None if verdict_raw is None else _verdict(verdict_raw, f"{where}: verdict"),
            summary=top.get("summary", str, ""),
            initial=_state(top.get("initial", dict, {}), f"{where}: initial"),
            version=version,
            race=top.get("race", str, ""),
        )
        try:
            timeline.validate()
        except BadTimeline as exc:
            raise BadTimeline(f"{where}: {exc.strerror}") from None
        return timeline


def state_changes(before: dict[str, str], after: dict[str, str]) -> list[tuple[str, str, str]]:
    """(name, before, after) for every entry that differs, in name order; "" for absent."""
    names = sorted(set(before) | set(after))
    return [
        (n, before.get(n, ""), after.get(n, "")) for n in names if before.get(n) != after.get(n)
    ]


def ran_said(ran: list[str], label: str = "ran: ", shown: int = RAN_SHOWN) -> str:
    """ "ran: PageMap._find_page, lock_page +2 more": the first `shown` names."""
    if not ran:
        return ""
    more = f" +{len(ran) - shown} more" if len(ran) > shown else ""
    return label + ", ".join(ran[:shown]) + more


def data_preview(hexdata: str, limit: int) -> tuple[str, str, int]:
    """The first `limit` bytes of hex data: spaced hex, printable text, total bytes."""
    raw = bytes.fromhex(hexdata)
    shown = raw[:limit]
    text = "".join(chr(b) if 32 <= b < 127 else "." for b in shown)
    return shown.hex(" "), text, len(raw)


# -- reading JSON, field by field --------------------------------------------------

_TIMELINE_FIELDS = (
    "title",
    "cores",
    "tasks",
    "rows",
    "verdict",
    "summary",
    "initial",
    "version",
    "race",
)
_TASK_FIELDS = ("tid", "name", "core")
_VERDICT_FIELDS = ("oracle", "message", "replay_command")
_ROW_FIELDS = (
    "step",
    "core",
    "task",
    "operation",
    "obj",
    "slot",
    "flags",
    "pte",
    "value",
    "location",
    "seed_function",
    "preempted",
    "failing",
    "data",
    "state",
    "note",
    "racing",
    "also_racing",
    "ran",
)
_ROW_TEXT_FIELDS = ("slot", "flags", "pte", "value", "location", "seed_function", "data", "note")
_TYPE_WORDS = {
    int: "a whole number",
    str: "a string",
    bool: "true or false",
    list: "a list",
    dict: "an object",
}
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


class _Fields:
    """One JSON object being read: each field checked for its type as it is taken."""

    def __init__(self, raw: Any, where: str, known: tuple[str, ...]) -> None:
        if not isinstance(raw, dict):
            raise BadTimeline(f"{where} must be a JSON object")
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise BadTimeline(f"{where} has unknown field(s): {', '.join(unknown)}")
        self.raw: dict[str, Any] = raw
        self.where = where

    def need(self, key: str, kind: type[Any]) -> Any:
        if key not in self.raw:
            raise BadTimeline(f"{self.where} lacks the field {key!r}")
        return self._typed(key, self.raw[key], kind)

    def get(self, key: str, kind: type[Any], default: Any) -> Any:
        return self._typed(key, self.raw[key], kind) if key in self.raw else default

    def _typed(self, key: str, value: Any, kind: type[Any]) -> Any:
        # bool is an int to Python; a JSON true is not a core number.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise BadTimeline(
                f"{self.where}: {key!r} must be {_TYPE_WORDS[kind]}, not {json.dumps(value)}"
            )
        return value


def _task(raw: Any, where: str) -> TaskInfo:
    f = _Fields(raw, where, _TASK_FIELDS)
    return TaskInfo(tid=f.need("tid", int), name=f.need("name", str), core=f.need("core", int))


def _verdict(raw: Any, where: str) -> Verdict:
    f = _Fields(raw, where, _VERDICT_FIELDS)
    return Verdict(
        oracle=f.need("oracle", str),
        message=f.need("message", str),
        replay_command=f.get("replay_command", str, ""),
    )


def _row(raw: Any, where: str) -> Row:
    f = _Fields(raw, where, _ROW_FIELDS)
    text = {k: f.get(k, str, "") for k in _ROW_TEXT_FIELDS}
    return Row(
        step=f.need("step", int),
        core=f.need("core", int),
        task=f.need("task", str),
        operation=f.need("operation", str),
        obj=f.get("obj", str, ""),
        preempted=f.get("preempted", bool, False),
        failing=f.get("failing", bool, False),
        racing=f.get("racing", bool, False),
        also_racing=f.get("also_racing", bool, False),
        state=_state(f.get("state", dict, {}), f"{where}: state"),
        ran=_strings(f.get("ran", list, []), f"{where}: ran"),
        **text,
    )


def _state(raw: dict[Any, Any], where: str) -> dict[str, str]:
    for name, value in raw.items():
        if not isinstance(value, str):
            raise BadTimeline(f"{where}[{name!r}] must be a string, not {json.dumps(value)}")
    return dict(raw)


def _strings(raw: list[Any], where: str) -> list[str]:
    for i, value in enumerate(raw):
        if not isinstance(value, str):
            raise BadTimeline(f"{where}[{i}] must be a string, not {json.dumps(value)}")
    return list(raw)


def _core_in_range(where: str, core: int, cores: int) -> None:
    if not 0 <= core < cores:
        raise BadTimeline(f"{where}: core {core} is outside 0..{cores - 1}")


def _is_hex(text: str) -> bool:
    return _HEX.fullmatch(text) is not None
