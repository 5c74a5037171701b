"""The context one schedule runs in: its Machine, its oracles, its end.

A `RunContext` is what a scenario (or a user's model) sees: the fresh
Machine, the memory-safety oracle (fed as tasks take and put pages, and as
frames are freed), `every_step` and `at_end` to register checks, and `fail`,
which ends the schedule at once with a Violation.  Nothing runs at every
step unless a check asked for it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import NoReturn

from pagemap.kernel.page import Page
from pagemap.kernel.pagemap import PageMap
from pagemap.machine import Machine
from pagemap.oracles import Violation
from pagemap.oracles.faults import FaultsReported
from pagemap.oracles.memory import MemorySafety
from pagemap.sync.core import Task
from pagemap.sync.sim import SimExecutor

StepCheck = Callable[[], None]
EndCheck = Callable[[], list[Violation]]


class RunContext:
    """One schedule: its Machine, its oracles, and what to do at its end."""

    def __init__(self, machine: Machine, sched: SimExecutor, scratch: str | None = None) -> None:
        self.machine = machine
        self.sched = sched
        self.memory = MemorySafety(machine, self.fail, self.who)
        self.faults = FaultsReported()  # fed by host files whose faults a scenario injects
        machine.allocator.on_free = self.memory.freed
        # Every access of every mapping is judged; a scenario that knows what
        # it mapped where (check/shadow.py) installs a sharper hook.
        machine.on_access = self.memory.access_anywhere
        self.step_checks: list[StepCheck] = []
        self.end_checks: list[EndCheck] = []
        self.cleanups: list[Callable[[], None]] = []
        self.violation: Violation | None = None
        self._scratch = scratch

    # -- for scenarios -----------------------------------------------------------
    def fail(self, oracle: str, message: str) -> NoReturn:
        """End the schedule now with a violation of `oracle`."""
        exc = Violation(oracle, message)
        if self.violation is None:
            self.violation = exc
        self.sched.abort(exc)
        raise exc  # only reached outside a task

    def hold(self, page: Page, pm: PageMap, index: int) -> None:
        """The current task holds a slot reference to `page` (map `pm`, `index`):
        from now until `drop`, the page must stay allocated and stay that page."""
        self.memory.hold(self.tid(), page, pm, index)

    def drop(self, page: Page) -> None:
        """Call just before `put_page`: the page may go once the reference does."""
        self.memory.drop(self.tid(), page)

    def caught(self, exc: BaseException) -> None:
        """A task caught `exc` from the kernel: the error reached a caller
        (oracles/faults.py matches it with the fault that caused it)."""
        self.faults.reported(exc)

    def every_step(self, check: StepCheck) -> None:
        """Run `check` at every scheduling point (keep it cheap)."""
        self.step_checks.append(check)
        if self.sched.on_step is None:
            self.sched.on_step = self._on_step

    def at_end(self, check: EndCheck) -> None:
        """Run `check` once every task is done; it returns the violations it sees."""
        self.end_checks.append(check)

    def cleanup(self, fn: Callable[[], None]) -> None:
        """Run `fn` when the schedule is over, however it ended."""
        self.cleanups.append(fn)

    def scratch(self) -> str:
        """A directory for this schedule's host files: the exploration's own,
        reused schedule after schedule, or a fresh one removed at the end."""
        if self._scratch is None:
            shm = "/dev/shm"
            where = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
            holder = tempfile.TemporaryDirectory(prefix="pagemap-check-", dir=where)
            self._scratch = holder.name
            self.cleanup(holder.cleanup)
        return self._scratch

    def tid(self) -> int:
        task = self.sched.current_task()
        return task.tid if task is not None else -1

    def who(self) -> str:
        task = self.sched.current_task()
        return task.name if task is not None else "the checker"

    # -- for the runner ------------------------------------------------------------
    def _on_step(self, task: Task) -> None:
        for check in self.step_checks:
            check()

    def finish(self) -> list[Violation]:
        """The end-of-run oracles, in the order the scenario registered them."""
        problems: list[Violation] = []
        for check in self.end_checks:
            problems.extend(check())
            if problems:
                break
        return problems
