"""The event log: every step of one SimExecutor run, in the order the steps
took effect (the raw material of the checker's path record).

Rules: the SimExecutor alone appends to a log, as each step happens, while
`record(log)` has it set; readers read a log once its run is over.  A
footprint object is named by its stable identity (`key`), so the same
object has the same name in every schedule that made it the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from types import FrameType

# Names the code a step's point was taken in, from the frame that logs it.
Site = Callable[[FrameType], str]


class EventLog:
    """Every step of one run, in the order the steps took effect.

    Step i was taken by task `tids[i]`, at a point of kind `kinds[i]`, on the
    object `objs[i]` with access `accs[i]`; `enabled[i]` is the bit mask of
    task ids that could have gone instead (the choice it was); `extra[i]`
    lists further (object, access) pairs that step touched.  With
    `keep_objects`, `objects` lists every registered object in the order they
    were made (a replay reads the machine's state from them); off by default,
    since it keeps the run's objects alive as long as the log.
    """

    __slots__ = (
        "_site",
        "accs",
        "enabled",
        "extra",
        "kinds",
        "made",
        "objects",
        "objs",
        "sites",
        "tids",
    )

    def __init__(self, keep_objects: bool = False, sites: Site | None = None) -> None:
        self.tids: list[int] = []
        self.kinds: list[str] = []
        self.objs: list[object] = []
        self.accs: list[int] = []
        self.enabled: list[int] = []
        self.extra: dict[int, list[tuple[object, int]]] = {}
        # Stable identities: the n-th object registered in the run gets sid -n,
        # so a footprint names the same object in every schedule that made it
        # the same way (frames are ints >= 0, keys are tuples).
        self.made = 0
        self.objects: list[object] | None = [] if keep_objects else None
        # With `sites`, where each step's point was taken, as sites(frame) names it.
        self.sites: list[str] | None = [] if sites is not None else None
        self._site = sites

    def key(self, obj: object) -> object:
        """The stable identity of a footprint object."""
        if type(obj) is int or type(obj) is tuple:
            return obj
        sid = getattr(obj, "sid", 0)
        if not sid:
            raise ValueError(
                f"footprint object {obj!r} has no stable identity: make it with the "
                "executor (atomic, spinlock, semaphore) or register it"
            )
        return sid

    def __len__(self) -> int:
        return len(self.tids)
