"""The known-bug zoo (issue 20): published page-cache races, found again.

A family of its own, not in `pagemap check`'s default set (registry()): each
scenario holds with its fix on, as the default ones do, but `pagemap check
--known` runs every one twice, with the fix off (it must be found) and on (it
must hold, with a witness that the race was reached), and `pagemap check
known-NAME` runs one like any other.
"""

from __future__ import annotations

from pagemap.check.scenarios.known.bugs import SCENARIOS

__all__ = ["SCENARIOS"]
