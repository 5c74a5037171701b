"""Scenarios kept out of the registry because today's kernel fails them.

Each module of check/scenarios may list such scenarios in `PENDING`, with
what they find.  They are not in `pagemap check`; here each must still fail
under DPOR with two preemptions, so that the fix that makes one hold also
moves it into its module's SCENARIOS (this test then tells you to).
"""

from __future__ import annotations

import pytest

from pagemap.check.explore import explore_model
from pagemap.check.scenario import Scenario
from pagemap.check.scenarios import ext2, files, mappings, pagemap, process, registry


def pending() -> list[tuple[Scenario, str]]:
    found: list[tuple[Scenario, str]] = []
    for module in (pagemap, mappings, process, files, ext2):
        found.extend(getattr(module, "PENDING", ()))
    return found


def test_a_pending_scenario_is_not_registered() -> None:
    registered = set(registry())
    for scenario, reason in pending():
        assert scenario.name not in registered
        assert reason


@pytest.mark.parametrize("scenario", [s for s, _ in pending()], ids=lambda s: s.name)
def test_a_pending_scenario_still_finds_its_bug(scenario: Scenario) -> None:
    summary = explore_model(scenario.model(), "dpor", bound=2, budget=20_000, shrink=False)
    assert summary.trace is not None, (
        f"{scenario.name} now holds: the kernel bug it was kept out for is fixed; move it "
        "from its module's PENDING into SCENARIOS"
    )
