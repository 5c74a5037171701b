"""The oracles, and the context one schedule runs in.

A `RunContext` is what a scenario (or a user's model) sees: the fresh
Machine, a way to declare what it holds, and `fail`, which ends the schedule
at once with a `Violation`.  The context checks at every scheduling point
that no page a task holds has been freed or reused (memory safety); the
scenarios check coherence as each load returns, and durability and
accounting once every task is done (`at_end`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from pagemap.kernel.page import Page
from pagemap.kernel.pagemap import PageMap
from pagemap.kernel.slot import decode_slot
from pagemap.machine import Machine
from pagemap.sync.executor import SimExecutor, StepHook, Task

if TYPE_CHECKING:
    from pagemap.check.strategy import CheckStrategy

# The oracle families of DESIGN.md, as traces and summaries name them.
MEMORY_SAFETY = "memory safety"
COHERENCE = "coherence"
DURABILITY = "durability"
ACCOUNTING = "accounting"
LIVENESS = "liveness"
CRASH = "kernel error"
ASSERTION = "assertion"  # an assert in a task of a model

StepCheck = Callable[[], None]
EndCheck = Callable[[], list["Violation"]]


class Violation(Exception):
    """An oracle does not hold; `oracle` names which one."""

    def __init__(self, oracle: str, message: str) -> None:
        self.oracle = oracle
        self.message = message
        super().__init__(f"{oracle}: {message}")


class RunContext:
    """One schedule: its Machine, what its tasks hold, and its oracles."""

    def __init__(self, machine: Machine, sched: SimExecutor) -> None:
        self.machine = machine
        self.sched = sched
        # (task id, ppn) -> (page, map, index) for every page a task holds.
        self.held: dict[tuple[int, int], tuple[Page, PageMap, int]] = {}
        self.step_checks: list[StepCheck] = []
        self.end_checks: list[EndCheck] = []
        self.cleanups: list[Callable[[], None]] = []
        self.chooser: CheckStrategy | None = None
        self.recorder: StepHook | None = None
        self.violation: Violation | None = None

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
        self.check_page(page, pm, index, "was handed")
        self.held[(self._tid(), page.ppn)] = (page, pm, index)

    def drop(self, page: Page) -> None:
        """Call just before `put_page`: the page may go once the reference does."""
        self.held.pop((self._tid(), page.ppn), None)

    def every_step(self, check: StepCheck) -> None:
        """Run `check` at every scheduling point (keep it cheap)."""
        self.step_checks.append(check)

    def at_end(self, check: EndCheck) -> None:
        """Run `check` once every task is done; it returns the violations it sees."""
        self.end_checks.append(check)

    def cleanup(self, fn: Callable[[], None]) -> None:
        """Run `fn` when the schedule is over, however it ended (temp files)."""
        self.cleanups.append(fn)

    def check_page(self, page: Page, pm: PageMap, index: int, what: str) -> None:
        """Memory safety for a page a task is using right now."""
        allocator = self.machine.allocator
        if allocator.is_free(page.ppn):
            self.fail(
                MEMORY_SAFETY,
                f"{self._who()} {what} page {index} of {pm.name} in frame {page.ppn}, "
                "which is free",
            )
        if page.mapping is not pm or page.index != index:
            owner = page.mapping.name if page.mapping is not None else "no map"
            self.fail(
                MEMORY_SAFETY,
                f"{self._who()} {what} page {index} of {pm.name} in frame {page.ppn}, "
                f"which now caches page {page.index} of {owner}",
            )
        slot = page.tree_slot
        if slot is not None and decode_slot(slot.value).refcnt == 0:
            self.fail(
                MEMORY_SAFETY,
                f"{self._who()} {what} page {index} of {pm.name} whose slot counts no reference",
            )

    # -- for the runner ------------------------------------------------------------
    def on_step(self, task: Task, kind: str, obj: object) -> None:
        if self.chooser is not None:
            self.chooser.last_kind = kind
        if self.recorder is not None:
            self.recorder(task, kind, obj)
        for (_tid, _ppn), (page, pm, index) in self.held.items():
            self.check_page(page, pm, index, "holds")
        for check in self.step_checks:
            check()

    def finish(self) -> list[Violation]:
        """The end-of-run oracles, in the order the scenario registered them."""
        problems: list[Violation] = []
        for check in self.end_checks:
            problems.extend(check())
        return problems

    def _tid(self) -> int:
        task = self.sched.current_task()
        return task.tid if task is not None else -1

    def _who(self) -> str:
        task = self.sched.current_task()
        return task.name if task is not None else "the checker"
