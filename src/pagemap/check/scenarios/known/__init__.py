"""The known-bug zoo (issue 20): published page-cache races, found again.

A family of its own, not in `pagemap check`'s default set (registry()): each
scenario holds with its fix on, as the default ones do, but `pagemap check
--known` runs every one twice, with the fix off (it must be found) and on (it
must hold, with a witness that the race was reached), and `pagemap check
known-NAME` runs one like any other.

Each module of this package is one mechanism's rows (bugs.py: what the seed's
kernel can express); each defines SCENARIOS and BUGS, gathered here in order.
"""

from __future__ import annotations

from pagemap.check.scenarios.known import bugs, cow, fsyncgate, punch, tlb, wp

_ROOMS = (bugs, tlb, cow, fsyncgate, punch, wp)

SCENARIOS = tuple(s for room in _ROOMS for s in room.SCENARIOS)
BUGS = tuple(b for room in _ROOMS for b in room.BUGS)

__all__ = ["BUGS", "SCENARIOS"]
