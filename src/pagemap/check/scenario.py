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
Size = int | Callable[[Params], int]


@dataclass(frozen=True)
class Scenario:
    """A named race.  `limits` gives each parameter's range (inclusive); the
    machine's `cores` and `frames` may grow with the parameters, so that a
    larger setting tests the same race rather than running out of frames."""

    name: str
    summary: str
    build: Build
    defaults: Mapping[str, int] = field(default_factory=dict)
    cores: Size = 2
    frames: Size = 8
    limits: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    # What the ranges cannot say: a sentence saying what is wrong, or "".
    valid: Callable[[Params], str] | None = None
    # The Machine's dirty tracking when the race is one mode's ("wp" or
    # "dbit"); None: the Machine's default ($PAGEMAP_DIRTY_TRACKING, else "wp").
    dirty_tracking: str | None = None

    def params(self, overrides: Mapping[str, int] | None = None) -> Params:
        """The defaults with `overrides`; ValueError for a parameter the
        scenario does not take or a value outside its range."""
        params = dict(self.defaults)
        for key, value in (overrides or {}).items():
            if key not in params:
                known = ", ".join(sorted(params)) or "none"
                raise ValueError(
                    f"scenario {self.name} has no parameter {key!r} (it takes: {known})"
                )
            low, high = self.limits.get(key, (0, 1_000_000))
            if not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"scenario {self.name}: {key}={value} is outside {low}..{high}")
            params[key] = value
        problem = self.valid(params) if self.valid is not None else ""
        if problem:
            raise ValueError(f"scenario {self.name}: {problem}")
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
        cores = self.scenario.cores
        return cores if isinstance(cores, int) else cores(self.params)

    @property
    def dirty_tracking(self) -> str | None:
        return self.scenario.dirty_tracking

    @property
    def memory(self) -> int:
        frames = self.scenario.frames
        return (frames if isinstance(frames, int) else frames(self.params)) * PGSIZE

    def describe(self) -> dict[str, str]:
        return {"scenario": self.scenario.name}

    def build(self, ctx: RunContext) -> None:
        self.scenario.build(ctx, self.params)
