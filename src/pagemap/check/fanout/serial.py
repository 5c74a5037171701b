"""The serial engine: units run in this process, one schedule when the order asks for it.

Nothing runs ahead of the fixed order (check/fanout/ledger.py), so nothing
is wasted and the first violation ends the run at once.  Rules: one thread;
`pump` runs exactly one schedule of the unit named.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pagemap.check.fanout.unit import Batch, Unit
from pagemap.check.fanout.work import UnitRun
from pagemap.check.runner import DEFAULT_WATCHDOG, Model
from pagemap.sync.watchdog import Watchdog


class SerialEngine:
    """`models`: models at hand by name (closures, say, which no import path
    names), used for the units whose scenario is that name."""

    name = "in this process"

    def __init__(self, models: Mapping[str, Model] | None = None) -> None:
        self.models = dict(models or {})
        self.units: dict[int, Unit] = {}
        self.runs: dict[int, UnitRun] = {}
        self.dog: Watchdog | None = None

    def workers(self) -> int:
        return 1

    def submit(self, uid: int, unit: Unit) -> None:
        self.units[uid] = unit

    def pump(self, want: int | None, timeout: float) -> list[Batch]:
        """One more schedule of unit `want`."""
        if want is None:
            return []
        run = self.runs.get(want)
        if run is None:
            if self.dog is None:
                self.dog = Watchdog(DEFAULT_WATCHDOG)
            unit = self.units[want]
            model = self.models.get(unit.scenario) if unit.functions is None else None
            run = self.runs[want] = UnitRun(unit, self.dog, model)
        first = run.count
        tick = run.step()
        if run.end is not None:
            del self.runs[want]
            self.units.pop(want, None)
        return [Batch(want, first, () if tick is None else (tick,), run.end)]

    def cancel(self, uids: Iterable[int]) -> None:
        for uid in uids:
            self.runs.pop(uid, None)
            self.units.pop(uid, None)

    def halt(self, grace: float) -> list[Batch]:
        """Nothing runs between two pumps: nothing to wait for."""
        return []

    def close(self) -> None:
        self.runs.clear()
        if self.dog is not None:
            self.dog.close()
            self.dog = None


__all__ = ["SerialEngine"]
