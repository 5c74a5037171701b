"""What every replacement policy shares: the calls the kernel makes, and victims in flight.

A policy is a pure, single-threaded structure: the kernel serialises every
call (its reclaim lock); nothing here takes a lock, touches a page or has a
scheduling point.  Keys are opaque and hashable (the kernel passes whatever
names a cached page to it).

The calls, in the life of one page:

- `insert(key)` after a miss brought the page in; that miss is the page's
  first use, so the access that caused it must not be reported again;
- `referenced(key)` on every later use: a VFS read or write, or an accessed
  bit found set when the kernel harvests them.  It is the hit path, so each
  policy keeps it to a dict operation or two.  A key the policy does not hold
  is ignored: a harvest may race with the page's removal;
- `victims(n, evictable)` picks up to n keys, in order.  `evictable` is
  asked only about a key the policy would evict at that moment; one that may
  not go (pinned, in use, locked) stays exactly where it was with its state
  as it was, and the search goes on past it, so fewer than n come back only
  when no other key may go.  Keys the policy merely ages on the way (CLOCK
  clearing a bit, S3-FIFO moving a page to its main queue) age as they
  would anyway.  Each victim is *in flight*: still cached, still counted by
  `len()`, but out of the policy's order until the kernel says what became
  of it, so a second `victims` call never hands it out again;
- `removed(key)` when the page left the cache, whether it was a victim the
  kernel freed or a resident page that left another way (truncation);
- `kept(key)` when the kernel could not free a victim (somebody took a
  reference meanwhile, or a MAP_LOCKED region pins it): it goes back where
  it was, then counts as used; FIFO, which records no use, puts it at the
  back instead, or it would be the next victim again at once.

`evictable` is called with nothing else of the policy running and must not
call the policy.  If it raises, the policy is left as if that `victims` call
had handed out nothing (keys it had aged stay aged), and the error passes on.

Misuse (a key inserted twice, `removed` of a key never inserted, `kept` of a
key that is not in flight) is a kernel bug and raises KernelBug.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import ClassVar

from pagemap.kernel.errors import InvalidArgument, KernelBug

Key = Hashable
Evictable = Callable[[Key], bool]


def always(key: Key) -> bool:
    """The `evictable` that lets every key go."""
    return True


class Policy:
    """The interface the kernel drives, and the bookkeeping of victims in flight.

    A subclass implements insert, referenced and victims (the hot calls, each
    written out in full for speed) and four small hooks used by the rest:
    `_resident(key)`, `_drop(key)` (take a resident key out), `_restore(key,
    origin)` (put an in-flight key back where `victims` found it) and
    `_forget(key, origin)` (an in-flight key really left).
    """

    __slots__ = ("_pending",)

    name: ClassVar[str] = "policy"

    def __init__(self) -> None:
        # key -> where victims() took it from (a small int a subclass defines)
        self._pending: dict[Key, int] = {}

    # -- the calls the kernel makes -------------------------------------------------
    def insert(self, key: Key) -> None:
        raise NotImplementedError

    def referenced(self, key: Key) -> None:
        raise NotImplementedError

    def victims(self, n: int, evictable: Evictable = always) -> list[Key]:
        raise NotImplementedError

    def removed(self, key: Key) -> None:
        """`key` left the cache: a victim the kernel freed, or a resident page."""
        origin = self._pending.pop(key, -1)
        if origin >= 0:
            self._forget(key, origin)
        elif not self._drop(key):
            raise KernelBug(f"{self.name}: removed() of {key!r}, which is not cached")

    def discard_many(self, keys: Sequence[Key]) -> None:
        """removed(key) for each key the policy holds; the others are passed
        over (the kernel's frees of a removal at scale)."""
        for key in keys:
            if key in self:
                self.removed(key)

    def kept(self, key: Key) -> None:
        """The kernel could not free victim `key`: it stays, as just used."""
        origin = self._pending.pop(key, -1)
        if origin < 0:
            raise KernelBug(f"{self.name}: kept() of {key!r}, which victims() did not hand out")
        self._restore(key, origin)
        self.referenced(key)

    # -- what tests and the kernel's reports look at ----------------------------------
    def __len__(self) -> int:
        """Keys cached: resident ones and victims in flight."""
        return self._nr_resident() + len(self._pending)

    def __contains__(self, key: object) -> bool:
        return key in self._pending or self._resident(key)

    def is_in_flight(self, key: Key) -> bool:
        """Whether `key` is a victim handed out and not yet removed or kept."""
        return key in self._pending

    def in_flight(self) -> list[Key]:
        """Victims handed out and not yet removed or kept, oldest first."""
        return list(self._pending)

    def lists(self) -> dict[str, list[tuple[Key, int]]]:
        """Each of the policy's lists, next victim first, as (key, state) pairs."""
        raise NotImplementedError

    # -- hooks ----------------------------------------------------------------------
    def _nr_resident(self) -> int:
        raise NotImplementedError

    def _resident(self, key: object) -> bool:
        raise NotImplementedError

    def _drop(self, key: Key) -> bool:
        raise NotImplementedError

    def _restore(self, key: Key, origin: int) -> None:
        raise NotImplementedError

    def _forget(self, key: Key, origin: int) -> None:
        """An in-flight victim left the cache; by default nothing remembers it."""

    # -- helpers for subclasses -------------------------------------------------------
    def _check_new(self, key: Key) -> None:
        if key in self:
            raise KernelBug(f"{self.name}: insert() of {key!r}, which is already cached")


def check_count(n: int) -> None:
    if n < 0:
        raise InvalidArgument(f"cannot ask for a negative number of victims ({n})")
