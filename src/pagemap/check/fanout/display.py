"""The progress display while units run: units done of made, schedules, rate, time left.

One display for every engine: it reads only the driver's Status
(check/fanout/driver.py).  Units made grows while DFS and DPOR units split,
so the time left is then a lower bound, shown as such ("≥").  Rules: use it
as a context manager around `explore`; `update` from the driver's thread.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from pagemap.check.fanout.driver import Status


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
    def __init__(self, console: Console) -> None:
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
        self.progress.start()
        self.task = self.progress.add_task("exploring", total=None, line="", scenario="")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.stop()

    def update(self, status: Status) -> None:
        assert self.task is not None
        self.progress.update(
            self.task,
            total=status.units,
            completed=status.units_done,
            line=describe(status),
            scenario=status.scenario,
        )


__all__ = ["Display", "clock", "describe"]
