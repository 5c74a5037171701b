"""The oracles: one library for the scenarios, `pagemap run` and the tests.

Each oracle is a small object fed events as they happen (an access landed, a
load returned, a write was made, a frame was freed) that reports a violation
the moment it sees one, or a function asked for its verdict at quiescence:

    memory.py       memory safety: no access lands in a free frame or in a
                    frame that holds another page; no page is freed while a
                    task holds it; no translation outlives removal
    coherence.py    the shadow: what every byte of a file must read as now
    durability.py   nothing lost: every write is in the backing store or in a
                    dirty cached page that writeback will send there
    accounting.py   at quiescence: references, locks, flags, counts, and no
                    frame leaked

The names below are the oracle families of DESIGN.md, as traces and
summaries name them.
"""

from __future__ import annotations

MEMORY_SAFETY = "memory safety"
COHERENCE = "coherence"
DURABILITY = "durability"
ACCOUNTING = "accounting"
LIVENESS = "liveness"
CRASH = "kernel error"
ASSERTION = "assertion"  # an assert in a task of a model


class Violation(Exception):
    """An oracle does not hold; `oracle` names which one."""

    def __init__(self, oracle: str, message: str) -> None:
        self.oracle = oracle
        self.message = message
        super().__init__(f"{oracle}: {message}")


__all__ = [
    "ACCOUNTING",
    "ASSERTION",
    "COHERENCE",
    "CRASH",
    "DURABILITY",
    "LIVENESS",
    "MEMORY_SAFETY",
    "Violation",
]
