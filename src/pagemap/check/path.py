"""The record of one schedule: the choices it made, and (when asked) every step.

A *choice point* is a scheduling decision with more than one candidate: the
tasks whose next step could go now (at a `relax` point the spinning task is
not a candidate while another is).  A schedule is fully described by the task
chosen at each choice point, in order; everything else follows, since a run
is a function of its choices and nothing else.  Every part of the checker
reads or writes this one record:

- strategies (check/strategies/) fill `choices` as they pick;
- DFS and DPOR keep their search trees as nodes over choice points, and read
  the steps (`log`, with footprints) to find races;
- replay follows `choices`; the shrinker edits them as *switches* (the choice
  points where a schedule departs from the default, non-preemptive pick);
- traces store them as a schedule string, and the fan-out of work to other
  processes hands out prefixes of them.

The schedule string is the choices run-length encoded: "0*3.1.0*2" is task
0 at three choice points, then task 1, then task 0 twice.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from pagemap.sync.core import RELAX, Task
from pagemap.sync.sim import EventLog


@dataclass
class Path:
    """One schedule: the task chosen at each choice point, how many of those
    choices were preemptions, and the steps it took (`log`, if recorded)."""

    choices: list[int] = field(default_factory=list)
    preemptions: int = 0
    steps: int = 0
    log: EventLog | None = None

    def schedule(self) -> str:
        return encode_schedule(self.choices)


def default_pick(alts: Sequence[Task], current: Task | None, kind: str) -> Task:
    """The choice that costs no preemption among the candidates `alts`: keep
    the current task; at its relax, the next task after it (round robin);
    when it cannot go on, the lowest task id.  DFS tries it first, DPOR goes
    on with it, the shrinker's switches are departures from it, and replay
    falls back on it."""
    if current is not None:
        if kind is RELAX:
            for task in alts:
                if task.tid > current.tid:
                    return task
        elif current in alts:
            return current
    return alts[0]


def is_preemption(nxt: Task, current: Task | None, kind: str) -> bool:
    """A switch away from a task that could have gone on, other than at its
    relax (there it asked to let others go first: CHESS's fair scheduling
    does not count those either)."""
    return current is not None and nxt is not current and kind is not RELAX


_RUN = re.compile(r"^(\d+)(?:\*(\d+))?$")


def encode_schedule(choices: Sequence[int]) -> str:
    """ "0*3.1.0*2" for [0, 0, 0, 1, 0, 0]; "" for no choice at all."""
    parts: list[str] = []
    i = 0
    while i < len(choices):
        j = i
        while j < len(choices) and choices[j] == choices[i]:
            j += 1
        parts.append(f"{choices[i]}*{j - i}" if j - i > 1 else str(choices[i]))
        i = j
    return ".".join(parts)


def decode_schedule(text: str) -> list[int]:
    """The choices a schedule string names; ValueError saying where it is wrong."""
    text = text.strip()
    if not text:
        return []
    out: list[int] = []
    for n, part in enumerate(text.split("."), 1):
        m = _RUN.match(part)
        if m is None:
            raise ValueError(
                f"schedule part {n} ({part!r}) is not TASK or TASK*COUNT "
                "(a schedule reads like 0*3.1.0*2)"
            )
        count = int(m.group(2) or 1)
        if count < 1 or count > 10_000_000:
            raise ValueError(f"schedule part {n} ({part!r}) repeats {count} times")
        out.extend([int(m.group(1))] * count)
    return out


__all__ = ["Path", "decode_schedule", "default_pick", "encode_schedule", "is_preemption"]
