"""Hidden state: plain Python attributes that two tasks race on unseen.

The footprint validator (check/footprints.py) sees the machine's words, locks,
TLBs and frames.  The kernel also keeps plain Python attributes on its objects
(a flag, a list, a count) that its steps read and write between points.  DPOR
orders two steps only when their footprints conflict, so an attribute written
by one task and read by another is safe only if something the footprints do
declare orders the two steps: a lock held around both, a word the writer
publishes and the reader loads.  When nothing does, DPOR takes the two steps
as independent and explores one order of them: a verdict of "holds" then
covers less than it says (the flusher's stop flag was such an attribute: see
Flusher.stop_requested).

Under validation a `HiddenStateDetector` records, for every object of a class
defined in `pagemap.kernel` or `pagemap.hw`, each read and write of an
instance attribute made by a task's step, and once the run is over checks
every conflicting pair (two tasks, one writing) against the happens-before
the footprints induce (check/hb.py).  A pair that is not ordered is a hidden
race: the schedule fails, naming the attribute, both steps and both source
lines.  The fix is to name the attribute in both steps (`executor.touch` with
a key of its own) or to guard it with a lock both take.

Rules: install() patches attribute access on the kernel's classes for the
length of one run and uninstall() restores them (the runner does both, in a
`finally`); nothing is recorded outside a task's step (set-up, the end
checks, a task's code before its first point, which runs before any choice).
Classes that define their own attribute hooks, and the executor's own
primitives (pagemap.sync), are left alone.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from types import MemberDescriptorType, ModuleType
from typing import Any, NamedTuple

from pagemap.check.hb import HappensBefore
from pagemap.sync.sim import EventLog, SimExecutor

# Modules whose classes hold the kernel's state.
_PACKAGES = ("pagemap.kernel", "pagemap.hw")
# Attributes, and classes (their names' ending), that are bookkeeping for
# people, never read by the kernel to decide anything: a race on them changes
# no verdict.
_BOOKKEEPING = frozenset({"stats"})
_BOOKKEEPING_CLASSES = "Stats"
# Hidden races this check has found and the kernel has not fixed yet, by
# class and attribute ("Ext2Inode.dirty"), each with the race and its fix:
# not reported while listed.  None now: the ones it found (the flusher's stop
# flag, a file's f_wb_err, a page's map as reclaim reads it, an ext2 inode's
# link count and dirty mark, ext2's allocation hint) are fixed in the kernel.
KNOWN_HIDDEN: dict[str, str] = {}
_Key = tuple[int, str]
# Values whose equality means the same state: two writes of one commute.
_PLAIN = (bool, int, str, type(None))


class Access(NamedTuple):
    """One step's read or write of an attribute."""

    step: int
    tid: int
    wrote: bool
    line: str  # file:line of the access
    value: object  # what a write left (None for a read)


@dataclass(frozen=True)
class HiddenRace:
    """Two steps of different tasks touched one attribute, one writing, and
    nothing their footprints declare orders them."""

    attribute: str
    first: str  # "step N (task: kind at file:line)"
    second: str

    def __str__(self) -> str:
        return (
            f"{self.first} and {self.second} both touch {self.attribute}, a plain attribute "
            "no footprint names, and nothing declared orders the two steps: DPOR would "
            "explore one order of them only"
        )


class HiddenStateDetector:
    """Records attribute accesses by tasks' steps and finds the unordered ones."""

    def __init__(self, sched: SimExecutor, known: frozenset[str] | None = None) -> None:
        if sched.log is None:
            raise ValueError("hidden-state detection needs a recorded run")
        self.sched = sched
        self.log: EventLog = sched.log
        # Per attribute: its accesses, in the run's order.
        self._seen: dict[_Key, list[Access]] = {}
        self._objects: dict[int, object] = {}  # keeps ids unique for the run
        self._names: dict[int, str] = {}
        self._restore: list[tuple[type, str, Any]] = []
        self.problems: list[HiddenRace] = []
        self.known = frozenset(KNOWN_HIDDEN) if known is None else known

    # -- patching ---------------------------------------------------------------
    def install(self) -> None:
        for cls in list(_kernel_classes()):  # all chosen before any is patched
            self._patch(cls)

    def uninstall(self) -> None:
        for cls, name, old in reversed(self._restore):
            if old is None:
                delattr(cls, name)
            else:
                setattr(cls, name, old)
        self._restore.clear()

    def _patch(self, cls: type) -> None:
        methods = _method_names(cls)
        record = self._record

        def getattribute(obj: object, name: str) -> Any:
            value = object.__getattribute__(obj, name)
            if name not in methods:
                record(obj, name, False)
            return value

        def setattr_(obj: object, name: str, value: Any) -> None:
            object.__setattr__(obj, name, value)
            record(obj, name, True, value)

        for hook, fn in (("__getattribute__", getattribute), ("__setattr__", setattr_)):
            self._restore.append((cls, hook, cls.__dict__.get(hook)))
            setattr(cls, hook, fn)

    # -- recording --------------------------------------------------------------
    def _record(self, obj: object, name: str, wrote: bool, value: object = None) -> None:
        sched = self.sched
        cur = sched.current
        tids = self.log.tids
        if cur is None or not tids or tids[-1] != cur.tid or name in _BOOKKEEPING:
            return  # not inside a step: set-up, end checks, a task's prologue
        step = len(tids) - 1
        key = (id(obj), name)
        seen = self._seen.get(key)
        if seen is None:
            seen = self._seen[key] = []
            self._objects[id(obj)] = obj
            self._names[id(obj)] = type(obj).__name__
        elif seen[-1].step == step and (seen[-1].wrote or not wrote):
            if wrote:  # what the step leaves is its last write's value
                seen[-1] = seen[-1]._replace(value=value)
            return  # this step already touched it as much
        frame = sys._getframe(2)
        line = f"{frame.f_code.co_filename}:{frame.f_lineno}"
        seen.append(Access(step, cur.tid, wrote, line, value))

    # -- the check --------------------------------------------------------------
    def finish(self) -> None:
        """The run is over: find the conflicting pairs nothing orders."""
        if not self._seen:
            return
        hb = HappensBefore(self.log)
        reported: set[str] = set()
        for (oid, name), accesses in self._seen.items():
            attribute = f"{self._names[oid]}.{name}"
            if attribute in reported or attribute in self.known:
                continue
            pair = _unordered_pair(hb, accesses)
            if pair is not None:
                reported.add(attribute)
                self.problems.append(
                    HiddenRace(attribute, self._describe(pair[0]), self._describe(pair[1]))
                )

    def _describe(self, access: Access) -> str:
        step, tid, wrote, line, _ = access
        task = self.sched.tasks[tid].name
        verb = "writes" if wrote else "reads"
        return f"step {step + 1} ({task}: {self.log.kinds[step]}, {verb} at {_short(line)})"


def _unordered_pair(hb: HappensBefore, accesses: list[Access]) -> tuple[Access, Access] | None:
    """The first access pair (an earlier one, a later one of another task, one
    of them a write) where the earlier does not happen before the later.

    Two writes of one plain value (a flag set True by two tasks) commute: the
    attribute ends the same in either order, so they are not a pair; each is
    still a pair with every read and every other write around them."""
    writes: list[Access] = []  # the last write, and the same value's writes before it
    reads: list[Access] = []  # since the last write
    for access in accesses:
        if access.wrote:
            same = bool(writes) and _same_value(writes[-1].value, access.value)
            earlier = reads + ([] if same else writes)
        elif any(_ordered(hb, w, access) for w in writes):
            earlier = []  # one of the writes it could see is fixed before it: so is the value
        else:
            earlier = writes
        for before in earlier:
            if not _ordered(hb, before, access):
                return before, access
        if access.wrote:
            writes = [*writes, access] if same else [access]
            reads = []
        else:
            reads.append(access)
    return None


def _ordered(hb: HappensBefore, before: Access, after: Access) -> bool:
    return before.tid == after.tid or _happens_before(hb, before.step, after.step)


def _same_value(a: object, b: object) -> bool:
    return type(a) is type(b) and type(a) in _PLAIN and a == b


def _happens_before(hb: HappensBefore, a: int, b: int) -> bool:
    return hb.vc[b][hb.log.tids[a]] >= hb.local[a] + 1


def _short(line: str) -> str:
    at = line.rfind("/pagemap/")
    return line[at + 1 :] if at >= 0 else line


def _method_names(cls: type) -> frozenset[str]:
    """Names a class resolves to something other than instance data: methods,
    properties, class-level descriptors.  A slot is data; so is a class-level
    constant (an int, a str): never written by a task, it never races."""
    out = set()
    for name in dir(cls):
        if name.startswith("__"):
            out.add(name)
            continue
        value = getattr(cls, name, None)
        if isinstance(value, MemberDescriptorType):
            continue
        if hasattr(type(value), "__get__") or isinstance(value, type):
            out.add(name)
    return frozenset(out)


def _kernel_classes() -> Iterator[type]:
    for modname, module in list(sys.modules.items()):
        if not modname.startswith(_PACKAGES) or not isinstance(module, ModuleType):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, type) and value.__module__ == modname and _patchable(value):
                yield value


def _patchable(cls: type) -> bool:
    if issubclass(cls, BaseException | tuple) or cls.__dict__.get("_is_protocol"):
        return False
    if cls.__name__.endswith(_BOOKKEEPING_CLASSES):
        return False
    for base in cls.__mro__[:-1]:
        if "__getattr__" in base.__dict__ or "__getattribute__" in base.__dict__:
            return False
        if "__setattr__" in base.__dict__:
            return False
    return not _is_enum(cls)


def _is_enum(cls: type) -> bool:
    return any(b.__name__ == "Enum" and b.__module__ == "enum" for b in cls.__mro__)


__all__ = ["KNOWN_HIDDEN", "HiddenRace", "HiddenStateDetector"]
