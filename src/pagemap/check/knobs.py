"""The settings of `explore()`: what the caller gave, else PAGEMAP_*, else the CLI's.

Rules: a setting the caller passes wins; one left out is read from the
environment when `explore()` runs (never cached, so a test run can set them); one
set nowhere takes `pagemap check`'s default (DPOR with at most 2 preemptions, to
the end of the space).  A variable that does not parse is a ValueError naming it
and saying what it takes, before any schedule runs; under pytest the plugin
checks them all as the session starts (one line, exit 2).

    PAGEMAP_STRATEGY      dpor | dfs | pct | random
    PAGEMAP_BUDGET        schedules (random and PCT need one: 1000 if unset)
    PAGEMAP_PREEMPTIONS   the preemption bound, or "none"
    PAGEMAP_SEED          the strategy's seed
    PAGEMAP_TRACE_DIR     where counterexample traces are written
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pagemap.check.runner import DEFAULT_CAP
from pagemap.check.strategies import DEFAULT_BOUND, DEFAULT_STRATEGY, EXHAUSTIVE, STRATEGIES
from pagemap.options import whole

FROM_ENV = -1  # explore()'s default for `preemptions`: the environment decides
DEFAULT_BUDGET = 1000  # random and PCT schedules when neither caller nor PAGEMAP_BUDGET says

T = TypeVar("T")


@dataclass(frozen=True)
class Knobs:
    """The settings an exploration runs with, every one resolved."""

    strategy: str
    budget: int | None
    preemptions: int | None
    seed: int
    trace_dir: Path | None


def resolve(
    strategy: str | None,
    budget: int | None,
    preemptions: int | None,
    seed: int | None,
    trace_dir: str | Path | None,
    env: Mapping[str, str] | None = None,
) -> Knobs:
    """The settings, from the caller's arguments, then `env` (os.environ)."""
    # A bad variable is the caller's mistake: pytest shows it at the caller's line,
    # not in these frames, whose arguments would print the whole environment.
    __tracebackhide__ = True
    env = os.environ if env is None else env
    if strategy is None:
        strategy = _read(env, "PAGEMAP_STRATEGY", _strategy, DEFAULT_STRATEGY)
    elif strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")
    if budget is None:
        budget = _read(env, "PAGEMAP_BUDGET", whole(1), None)
    if budget is None:
        budget = DEFAULT_CAP if strategy in EXHAUSTIVE else DEFAULT_BUDGET
    if preemptions == FROM_ENV:
        unset: int | None = FROM_ENV
        named = _read(env, "PAGEMAP_PREEMPTIONS", _bound, unset)
        if named == FROM_ENV:
            named = DEFAULT_BOUND if strategy in EXHAUSTIVE else None
        preemptions = named
    if seed is None:
        seed = _read(env, "PAGEMAP_SEED", whole(0), 0)
    if trace_dir is None:
        trace_dir = env.get("PAGEMAP_TRACE_DIR", "").strip() or None
    return Knobs(
        strategy, budget, preemptions, seed, Path(trace_dir) if trace_dir is not None else None
    )


def check_environment(env: Mapping[str, str] | None = None) -> None:
    """ValueError, in one line, if a PAGEMAP_* variable does not parse: what a
    test session runs first, so that no test runs under a setting that was meant
    and not taken."""
    __tracebackhide__ = True
    resolve(None, None, FROM_ENV, None, None, env)


def _read(env: Mapping[str, str], name: str, parse: Callable[[str], T], default: T) -> T:
    __tracebackhide__ = True
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        return parse(text)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(f"{name}={text}: {exc}") from None


def _strategy(text: str) -> str:
    if text not in STRATEGIES:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(STRATEGIES)}")
    return text


def _bound(text: str) -> int | None:
    if text.lower() == "none":
        return None
    try:
        return whole(0, 1000)(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (or none, for no bound)") from None


__all__ = ["DEFAULT_BUDGET", "FROM_ENV", "Knobs", "check_environment", "resolve"]
