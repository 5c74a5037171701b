"""Scenarios: named, parameterized races the checker explores.

A scenario builds one schedule's world on a fresh Machine: page maps,
files, processes, and the tasks that race.  Its `build(ctx, params)` spawns
the tasks and registers the end-of-run oracles with `ctx.at_end`.  Whatever
a schedule depends on is built anew each time, so a schedule is a function
of the choices made at its scheduling points and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pagemap.check.context import RunContext
from pagemap.hw.memory import PGSIZE

Params = dict[str, int]
Build = Callable[[RunContext, Params], None]


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    build: Build
    defaults: Mapping[str, int] = field(default_factory=dict)
    cores: int = 2
    frames: int = 8

    def params(self, overrides: Mapping[str, int] | None = None) -> Params:
        params = dict(self.defaults)
        for key, value in (overrides or {}).items():
            if key not in params:
                known = ", ".join(sorted(params)) or "none"
                raise ValueError(
                    f"scenario {self.name} has no parameter {key!r} (it takes: {known})"
                )
            params[key] = value
        return params

    def model(self, overrides: Mapping[str, int] | None = None) -> ScenarioModel:
        return ScenarioModel(self, self.params(overrides))


@dataclass(frozen=True)
class ScenarioModel:
    """A scenario with its parameters fixed: what the runner explores."""

    scenario: Scenario
    params: Params

    @property
    def name(self) -> str:
        return self.scenario.name

    @property
    def cores(self) -> int:
        return self.scenario.cores

    @property
    def memory(self) -> int:
        return self.scenario.frames * PGSIZE

    def describe(self) -> dict[str, str]:
        return {"scenario": self.scenario.name}

    def build(self, ctx: RunContext) -> None:
        self.scenario.build(ctx, self.params)
