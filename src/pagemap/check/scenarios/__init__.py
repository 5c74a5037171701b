"""The scenario library: every named scenario `pagemap check` knows."""

from __future__ import annotations

from pagemap.check.scenario import Scenario
from pagemap.check.scenarios import (
    cow,
    errseq,
    ext2,
    files,
    mappings,
    pagemap,
    process,
    punch,
    races,
    races_ext2,
    tlb,
    wp,
)


def registry() -> dict[str, Scenario]:
    """Name -> scenario, in the order `pagemap check` runs them."""
    found: dict[str, Scenario] = {}
    for module in (
        pagemap,
        mappings,
        process,
        cow,
        files,
        ext2,
        tlb,
        errseq,
        punch,
        wp,
        races,
        races_ext2,
    ):
        for scenario in module.SCENARIOS:
            found[scenario.name] = scenario
    return found


def zoo() -> dict[str, Scenario]:
    """Name -> scenario of the known-bug zoo (check/scenarios/known/): a
    family of its own, outside the default set, run by `pagemap check
    --known` or by name."""
    from pagemap.check.scenarios.known import SCENARIOS

    return {scenario.name: scenario for scenario in SCENARIOS}


def lookup(name: str) -> Scenario:
    scenarios = {**registry(), **zoo()}
    if name not in scenarios:
        raise ValueError(f"unknown scenario {name!r} (known: {', '.join(scenarios)})")
    return scenarios[name]
