"""What each step ran: the kernel functions called within its segment.

Under the SimExecutor a step is a whole segment: the task chosen at a point
performs that point's operation and runs on, alone, until its next point, so a
function called and returned in between (no point of its own) is part of that
step.  A `StepCalls` notes, for each step of one recorded run, the kernel
functions that step entered; the recorder puts their names on the step's row
(check/recorder.py), and tests/check/test_explain.py counts a step as running a
mutated function when it did.

Rules: installed for one run only, as the run's observer (once the model is
built, before any task runs, and after anything else sets the executor's
`on_end`, which it chains), it sets the thread's profile function
(sys.setprofile, which greenlet leaves in place across switches, so it sees the
calls in every task's greenlet) and restores the one before when the run
ends.  It only reads: it never takes a point, a lock or a reference, so the
run it watches is the run that was recorded.  It costs nothing unless
installed: replays install it, explorations never do.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import CodeType, FrameType

from pagemap.check.context import RunContext

# Whose functions a step's row lists as run: the kernel's, the simulated
# hardware's, and a mutant's stand-ins for the kernel's (check/mutants/).
_RAN_FILES = ("/pagemap/kernel/", "/pagemap/hw/", "/pagemap/check/mutants/")
# Code that watches a run from inside its steps (the recorder, the oracles, the
# checks run at every step, footprint validation): what it calls is no step's
# own work.  The checker's model code (scenarios, check/shadow.py) is a task's.
_WATCHERS = (
    "/pagemap/oracles/",
    *(
        f"/pagemap/check/{name}.py"
        for name in ("recorder", "snapshot", "decode", "context", "footprints", "hidden")
    ),
)
_SHOWN, _KERNEL, _WATCHER, _OTHER = range(4)


def _kind(code: CodeType) -> int:
    filename = code.co_filename
    if any(s in filename for s in _RAN_FILES):
        # A comprehension or lambda is part of the function it is written in.
        return _KERNEL if code.co_name.startswith("<") else _SHOWN
    if any(s in filename for s in _WATCHERS):
        return _WATCHER
    return _OTHER


class StepCalls:
    """Which kernel functions each step of one run ran.

    `ran[i]`: the code of the functions step i (an index of the run's log)
    entered, first entered first.  A call counts against the step in progress:
    the current task's latest logged step, so the code after a task's last
    point is its last step's, and the code before the first point of a task
    started mid-run its START's.  Not counted: calls outside a task (set-up,
    the end checks), the code before the first point of a task that starts
    with the run (the log has no step of it yet, and that code touches nothing
    shared), and what the checker's own watchers call (the recorder, the
    oracles, the checks run at every step), known by the first frame outside
    the kernel that led to the call."""

    def __init__(self) -> None:
        self.ran: dict[int, dict[CodeType, None]] = {}
        self._kinds: dict[CodeType, int] = {}
        self._accessors: set[CodeType] | None = None

    def install(self, ctx: RunContext) -> None:
        sched, log = ctx.sched, ctx.sched.log
        assert log is not None, "StepCalls needs a recorded run"
        kinds, ran = self._kinds, self.ran
        tids = log.tids
        previous: Callable[..., object] | None = sys.getprofile()

        def kind_of(code: CodeType) -> int:
            kind = kinds.get(code)
            if kind is None:
                kind = kinds[code] = _kind(code)
            return kind

        def profile(frame: FrameType, event: str, arg: object) -> None:
            if previous is not None:
                previous(frame, event, arg)
            if event != "call":
                return
            code = frame.f_code
            if kind_of(code) != _SHOWN:
                return
            task = sched.current
            if task is None or not tids or tids[-1] != task.tid:
                return
            caller = frame.f_back
            while caller is not None and kind_of(caller.f_code) <= _KERNEL:
                caller = caller.f_back
            if caller is not None and kind_of(caller.f_code) == _WATCHER:
                return
            ran.setdefault(len(tids) - 1, {})[code] = None

        ended = sched.on_end

        def end() -> None:
            # Off before the run's end; what follows unwinds the tasks, no
            # step's work.
            sys.setprofile(previous)
            if ended is not None:
                ended()

        sys.setprofile(profile)
        sched.on_end = end
        ctx.cleanups.append(lambda: sys.setprofile(previous))  # a run that never began

    def names(self, i: int) -> list[str]:
        """The qualified names of the functions step i ran, for a person: the
        kernel's (and a mutant's) before the hardware's, and no property (a
        page's `flags` is an attribute read, not code a reader looks for)."""
        if self._accessors is None:
            self._accessors = _property_code()
        codes = [c for c in self.ran.get(i, {}) if c not in self._accessors]
        hw = [c for c in codes if "/pagemap/hw/" in c.co_filename]
        return [c.co_qualname for c in codes if c not in hw] + [c.co_qualname for c in hw]


def _property_code() -> set[CodeType]:
    """The code of every property's getter, setter and deleter of the kernel's
    and the hardware's classes."""
    out: set[CodeType] = set()
    for name, module in list(sys.modules.items()):
        if not name.startswith(("pagemap.kernel", "pagemap.hw")):
            continue
        for cls in vars(module).values():
            if not isinstance(cls, type) or cls.__module__ != name:
                continue
            for attr in vars(cls).values():
                if isinstance(attr, property):
                    for fn in (attr.fget, attr.fset, attr.fdel):
                        code = getattr(fn, "__code__", None)
                        if isinstance(code, CodeType):
                            out.add(code)
    return out


__all__ = ["StepCalls"]
