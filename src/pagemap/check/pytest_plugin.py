"""The pytest plugin (entry point `pytest11`: pagemap): explore models from tests.

    def test_counter(pagemap_explore):
        pagemap_explore(Counter, bump, bump, check=lambda c: c.value == 2)

    @pytest.mark.pagemap(strategy="pct", budget=500)   # this test's own defaults
    def test_counter_pct(pagemap_explore):
        pagemap_explore(Counter, bump, bump, check=...)

`pagemap_explore` is `explore()` (check/model.py) with the settings of the test's
`pagemap` marker as defaults; a plain `explore()` call in a test works the same,
less the marker.  Precedence: the call's arguments, the marker's, PAGEMAP_*
(check/knobs.py), `pagemap check`'s defaults.

Rules: a PAGEMAP_* variable that does not parse ends the session before any
test runs, in one line, exit 2.  The plugin sets PAGEMAP_DATABASE for the
session (when it is not set already) to the `pagemap_database` ini option,
`.pagemap` under the root of the project by default, or "off"; it puts back what
was there when the session ends.
Failing schedules are stored there by test id and replayed first on the next run
(check/database.py), on the test's own functions: the file gives the schedule, and
nothing it names is imported.  A failure's traceback ends at the test's own line
(explore and its helpers hide their frames), and its message ends with the lines
that replay it: the pytest command, and `pagemap replay TRACE --model-path DIR`
with the directory the test module was imported from.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from pagemap.check.database import OFF
from pagemap.check.knobs import check_environment
from pagemap.check.model import explore
from pagemap.check.runner import Summary

ENV = "PAGEMAP_DATABASE"
INI = "pagemap_database"
_PREVIOUS = pytest.StashKey[str | None]()  # PAGEMAP_DATABASE before the session


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        INI,
        "where failing pagemap schedules are kept between runs (relative to the root of "
        "the project), or off; PAGEMAP_DATABASE overrides it",
        default=".pagemap",
    )


def pytest_configure(config: pytest.Config) -> None:
    try:
        check_environment()
    except ValueError as exc:
        pytest.exit(f"pagemap: {exc}", returncode=2)
    config.addinivalue_line(
        "markers",
        "pagemap(**settings): defaults for pagemap_explore in this test "
        "(strategy, budget, preemptions, seed, depth, cores, memory, max_steps, trace_dir)",
    )
    config.stash[_PREVIOUS] = os.environ.get(ENV)
    if os.environ.get(ENV) is None:
        where = str(config.getini(INI)).strip()
        if where.lower() not in OFF:
            where = str(config.rootpath / where)
        os.environ[ENV] = where


def pytest_unconfigure(config: pytest.Config) -> None:
    if _PREVIOUS not in config.stash:
        return
    previous = config.stash[_PREVIOUS]
    if previous is None:
        os.environ.pop(ENV, None)
    else:
        os.environ[ENV] = previous


def pytest_report_header(config: pytest.Config) -> str:
    where = os.environ.get(ENV, "")
    kept = "off" if where.lower() in OFF else f"{where} (failing schedules are replayed first)"
    knobs = ", ".join(
        f"{k}={os.environ[k]}"
        for k in ("PAGEMAP_STRATEGY", "PAGEMAP_BUDGET", "PAGEMAP_PREEMPTIONS", "PAGEMAP_SEED")
        if os.environ.get(k)
    )
    return f"pagemap: database {kept}" + (f"; {knobs}" if knobs else "")


@pytest.fixture
def pagemap_explore(request: pytest.FixtureRequest) -> Callable[..., Summary]:
    """`explore`, with this test's `pagemap` marker as its defaults."""
    marker = request.node.get_closest_marker("pagemap")
    preset: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}

    def run(setup: Callable[[Any], Any], *tasks: Callable[[Any], object], **kw: Any) -> Summary:
        __tracebackhide__ = True  # the failure points at the test's line
        return explore(setup, *tasks, **{**preset, **kw})

    return run


__all__ = ["pagemap_explore"]
