"""The progress display while units run: units done of made, schedules, rate, time left.

One display for every engine: it reads only the driver's Status
(check/fanout/driver.py).  Units made grows while DFS and DPOR units split,
so the time left is then a lower bound, shown as such ("≥").  On a terminal
it is one live bar; into a file or a pipe (a long run's log) a live bar is
never drawn, so it writes a plain line every LOG_EVERY seconds and the last
status at the end (units of many scenarios run in turn, so a change of the
scenario shown says nothing finished).  Rules: use it
as a context manager around `explore`; `update` from the driver's thread.
"""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from pagemap.check.fanout.driver import Status

LOG_EVERY = 30.0  # seconds between plain progress lines when not on a terminal


def clock(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def describe(status: Status) -> str:
    """One line: "12/40 units · 3,400 schedules · 1,234/s · ≥0:00:12 left"."""
    parts = [
        f"{status.units_done}/{status.units} units",
        f"{status.schedules:,} schedule{'' if status.schedules == 1 else 's'}",
        f"{status.rate:,.0f}/s",
    ]
    eta = status.eta()
    if eta is not None and status.units_done < status.units:
        seconds, whole = eta
        parts.append(("" if whole else "≥") + clock(seconds) + " left")
    return " · ".join(parts)


class Display:
    def __init__(self, console: Console, log_every: float = LOG_EVERY) -> None:
        self.console = console
        self.live = console.is_terminal
        self.log_every = log_every
        self.logged = time.monotonic()
        self.last: Status | None = None
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[line]}"),
            TimeElapsedColumn(),
            TextColumn("[dim]{task.fields[scenario]}"),
            console=console,
            transient=False,
        )
        self.task: TaskID | None = None

    def __enter__(self) -> Display:
        if self.live:
            self.progress.start()
            self.task = self.progress.add_task("exploring", total=None, line="", scenario="")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.live:
            self.progress.stop()
        elif self.last is not None:
            self._log(self.last)

    def update(self, status: Status) -> None:
        if not self.live:
            self._maybe_log(status)
            return
        assert self.task is not None
        self.progress.update(
            self.task,
            total=status.units,
            completed=status.units_done,
            line=describe(status),
            scenario=status.scenario,
        )

    def _maybe_log(self, status: Status) -> None:
        self.last = status
        if time.monotonic() - self.logged >= self.log_every:
            self._log(status)

    def _log(self, status: Status) -> None:
        self.logged = time.monotonic()
        self.last = None
        where = f" · at {status.scenario}" if status.scenario else ""
        self.console.print(f"exploring: {describe(status)}{where}", highlight=False, soft_wrap=True)


__all__ = ["Display", "clock", "describe"]
