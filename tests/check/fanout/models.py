"""Models for the fan-out tests, named by import path: worker processes and
Dask workers build them from these names, as they would a user's."""

from __future__ import annotations

import os
import signal
import time

from pagemap.check.fanout import ModelRef
from pagemap.machine import Machine
from pagemap.sync.atomic import AtomicWord

HERE = __name__


class Counter:
    def __init__(self, machine: Machine) -> None:
        self.word: AtomicWord = machine.executor.atomic(0, "counter")


def setup(machine: Machine) -> Counter:
    return Counter(machine)


def bump(c: Counter) -> None:
    """Increment as two steps: two bumps racing lose one."""
    v = c.word.load()
    c.word.store(v + 1)


def add(c: Counter) -> None:
    c.word.fetch_add(1)
    c.word.fetch_add(1)


def three(c: Counter) -> bool:
    return c.word.value == 3


def four(c: Counter) -> bool:
    return c.word.value == 4


def five(c: Counter) -> bool:
    return c.word.value == 5


def six(c: Counter) -> bool:
    return c.word.value == 6


def die(c: Counter) -> None:
    """Kill the process running the schedule (a worker, never the driver)."""
    os.kill(os.getpid(), signal.SIGKILL)


def slow(c: Counter) -> None:
    time.sleep(0.05)  # a slow schedule, for the unit timeout; no step is skipped
    c.word.fetch_add(1)


def ref(name: str, *tasks: str, check: str | None = None) -> ModelRef:
    return ModelRef(
        name,
        f"{HERE}:setup",
        tuple(f"{HERE}:{t}" for t in tasks),
        f"{HERE}:{check}" if check else None,
        cores=len(tasks),
    )


RACY = ref("racy", "bump", "bump", "bump", check="three")  # loses an update: a violation
LATE = ref("late", "bump", "add", "add", check="five")  # DPOR's 7th schedule loses an add
SAFE = ref("safe", "add", "add", "add", check="six")  # holds: 60 traces within 2 preemptions
PAIR = ref("pair", "add", "add", check="four")  # holds: 6 traces
