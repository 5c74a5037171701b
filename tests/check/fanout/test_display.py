"""The progress line: units done of made, schedules, rate, and time left,
exact when the plan fixes the number of schedules, a lower bound otherwise."""

from __future__ import annotations

import io

from rich.console import Console

from pagemap.check.fanout import Status
from pagemap.check.fanout.display import Display, describe


def status(done: int, units: int, schedules: int, planned: int | None) -> Status:
    return Status(done, units, schedules, 10.0, "load-race", planned, 2)


def test_the_line_says_units_schedules_rate_and_time_left() -> None:
    line = describe(status(3, 12, 1500, 3000))
    assert line == "3/12 units · 1,500 schedules · 150/s · 0:00:10 left"


def test_time_left_is_a_lower_bound_while_units_may_split() -> None:
    assert describe(status(4, 12, 800, None)).endswith("≥0:00:20 left")


def test_nothing_is_promised_before_anything_is_done_or_once_all_is() -> None:
    assert "left" not in describe(status(0, 12, 0, None))
    assert "left" not in describe(status(12, 12, 900, None))


def test_the_display_shows_the_last_status() -> None:
    out = io.StringIO()
    console = Console(file=out, width=160, force_terminal=False)
    with Display(console) as display:
        display.update(status(3, 12, 1500, 3000))
    assert "3/12 units" in out.getvalue() and "load-race" in out.getvalue()


def test_into_a_file_it_writes_a_plain_line_now_and_then_and_the_last_at_the_end() -> None:
    out = io.StringIO()
    console = Console(file=out, width=160, force_terminal=False)
    with Display(console, log_every=3600.0) as display:
        display.update(Status(0, 3, 10, 1.0, "load-race", None, 1))
        display.update(Status(1, 3, 20, 2.0, "store-remove", None, 1))
        assert out.getvalue() == ""  # not yet time for a line
        display.update(Status(3, 3, 30, 3.0, "store-remove", None, 1))
    assert out.getvalue().splitlines() == [
        "exploring: 3/3 units · 30 schedules · 10/s · at store-remove"
    ]


def test_into_a_file_a_long_run_still_shows_it_moves() -> None:
    out = io.StringIO()
    console = Console(file=out, width=160, force_terminal=False)
    with Display(console, log_every=0.0) as display:
        display.update(Status(0, 3, 10, 1.0, "load-race", None, 1))
        display.update(Status(0, 3, 90, 9.0, "load-race", None, 1))
    assert [line.split(" · ")[1] for line in out.getvalue().splitlines()] == [
        "10 schedules",
        "90 schedules",
    ]
