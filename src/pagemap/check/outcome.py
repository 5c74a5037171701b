"""What the runner explores (`Model`) and how one schedule of it ended
(`Outcome`): named below the runner, so that the strategies that are told
of each run's end and the trace written from a failing one need not import
the runner that drives them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pagemap.check.context import RunContext
from pagemap.check.path import Path
from pagemap.oracles import Violation
from pagemap.sync.sim import EventLog


class Model(Protocol):
    """What the runner explores: a scenario with its parameters, or a user's model."""

    @property
    def name(self) -> str: ...

    @property
    def params(self) -> dict[str, int]: ...

    @property
    def cores(self) -> int: ...

    @property
    def memory(self) -> int: ...

    def build(self, ctx: RunContext) -> None: ...


@dataclass
class Outcome:
    """How one schedule ended."""

    violation: Violation | None
    path: Path
    steps: int
    log: EventLog | None = None
    stopped: BaseException | None = None  # DPOR cut it short: a reordering, not a failure

    @property
    def schedule(self) -> list[int]:
        return self.path.choices

    @property
    def preemptions(self) -> int:
        return self.path.preemptions


__all__ = ["Model", "Outcome"]
