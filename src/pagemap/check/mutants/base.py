"""The mutant record: a kernel with one rule of the protocol broken.

A mutant replaces a method or two of a kernel class (or a module's function)
for the length of a `with mutant.applied()` block; the real kernel is never
edited.  The families of mutants live beside this module (check/mutants/),
one room of the kernel each; check/mutants/__init__.py gathers them into the
one table, MUTANTS.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any
from unittest import mock

from pagemap.kernel.pagemap import PageMap


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

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for attr, fn in self.patches.items():
                stack.enter_context(mock.patch.object(self.target, attr, fn))
            yield
