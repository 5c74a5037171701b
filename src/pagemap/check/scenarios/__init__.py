"""The scenario library: every named scenario `pagemap check` knows."""

from __future__ import annotations

from pagemap.check.scenario import Scenario
from pagemap.check.scenarios import ext2, files, mappings, pagemap, process


def registry() -> dict[str, Scenario]:
    """Name -> scenario, in the order `pagemap check` runs them."""
    found: dict[str, Scenario] = {}
    for module in (pagemap, mappings, process, files, ext2):
        for scenario in module.SCENARIOS:
            found[scenario.name] = scenario
    return found


def lookup(name: str) -> Scenario:
    scenarios = registry()
    if name not in scenarios:
        raise ValueError(f"unknown scenario {name!r} (known: {', '.join(scenarios)})")
    return scenarios[name]
