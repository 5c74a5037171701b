"""The mutant record: a kernel with one rule of the protocol broken.

A mutant replaces a method or two of a kernel class (or a module's function)
for the length of a `with mutant.applied()` block; the real kernel is never
edited.  The families of mutants live beside this module (check/mutants/),
one room of the kernel each; check/mutants/__init__.py gathers them into the
one table, MUTANTS.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any
from unittest import mock

from pagemap.check.context import RunContext
from pagemap.check.runner import Model
from pagemap.kernel.pagemap import PageMap
from pagemap.machine import DIRTY_TRACKING_ENV


@dataclass(frozen=True)
class Mutant:
    name: str
    broken: str  # the rule it breaks
    scenario: str
    patches: dict[str, Callable[..., Any]]
    budget: int  # DFS schedules within which it must be caught
    bound: int = 2
    params: dict[str, int] = field(default_factory=dict)
    target: type | ModuleType = PageMap
    # A mutant of one dirty-tracking mode's mechanism ("dbit": the D bits
    # that mode collects) runs with the Machine's default set to that mode
    # ($PAGEMAP_DIRTY_TRACKING) while applied; None: the default's.
    dirty_tracking: str | None = None

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            if self.dirty_tracking is not None:
                stack.enter_context(
                    mock.patch.dict(os.environ, {DIRTY_TRACKING_ENV: self.dirty_tracking})
                )
            for attr, fn in self.patches.items():
                stack.enter_context(mock.patch.object(self.target, attr, fn))
            yield


@dataclass(frozen=True)
class MutatedModel:
    """A model whose every run has `mutant` applied: what a trace written
    under `pagemap check --mutant` replays on.  The mutant's patches are
    undone when the run ends (a cleanup of its RunContext)."""

    inner: Model
    mutant: Mutant

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def params(self) -> dict[str, int]:
        return self.inner.params

    @property
    def cores(self) -> int:
        return self.inner.cores

    @property
    def memory(self) -> int:
        return self.inner.memory

    def describe(self) -> dict[str, Any]:
        describe = getattr(self.inner, "describe", None)
        inner = describe() if describe is not None else {"name": self.inner.name}
        return {**inner, "mutant": self.mutant.name}

    def build(self, ctx: RunContext) -> None:
        stack = contextlib.ExitStack()
        stack.enter_context(self.mutant.applied())
        ctx.cleanup(stack.close)
        self.inner.build(ctx)
