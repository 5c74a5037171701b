"""A radix tree from page index to slot word, 64 ways a level.

As in Akaros, the tree hands back the *slot* (here an atomic word) rather
than the value, so the page map can compare-and-swap a slot without holding
the tree's writer lock.  Structure changes (insert, delete) happen under the
page map's lock; the tree itself has no lock and no scheduling points.

The tree is only as tall as its largest index needs, and only the paths to
present entries exist, so memory grows with the entries, not with the
largest index: one entry at index 2**52 costs nine small nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from pagemap.kernel.errors import AlreadyExists, InvalidArgument
from pagemap.sync.atomic import AtomicWord

RADIX_SHIFT = 6
RADIX_FANOUT = 1 << RADIX_SHIFT
RADIX_MASK = RADIX_FANOUT - 1
RADIX_MAX_HEIGHT = 9
RADIX_MAX_INDEX = (1 << (RADIX_SHIFT * RADIX_MAX_HEIGHT)) - 1  # 2**54 - 1
# Every index a tree (so a page map) can hold, as a count: "to the end, whatever the size".
ALL_PAGES = RADIX_MAX_INDEX + 1


class _Node:
    __slots__ = ("count", "items")

    def __init__(self) -> None:
        # Interior nodes hold _Nodes, leaves hold AtomicWords.
        self.items: list[Any] = [None] * RADIX_FANOUT
        self.count = 0


class RadixTree:
    """index -> AtomicWord slot.  `make_slot(value, name)` builds new slots."""

    def __init__(self, make_slot: Callable[[int, str], AtomicWord], name: str = "tree") -> None:
        self._make_slot = make_slot
        self.name = name
        self.root: _Node | None = None
        self.height = 0  # levels below and including the root; 0 when empty
        self.nr_items = 0
        self.nr_nodes = 0

    @staticmethod
    def _check_index(index: int) -> None:
        if not 0 <= index <= RADIX_MAX_INDEX:
            raise InvalidArgument(f"radix index {index} is outside 0..{RADIX_MAX_INDEX}")

    def lookup_slot(self, index: int) -> AtomicWord | None:
        """The slot at `index`, or None (radix_lookup_slot)."""
        node = self.root
        if node is None or index >> (RADIX_SHIFT * self.height):
            return None
        shift = RADIX_SHIFT * (self.height - 1)
        while shift:
            node = node.items[(index >> shift) & RADIX_MASK]
            if node is None:
                return None
            shift -= RADIX_SHIFT
        slot: AtomicWord | None = node.items[index & RADIX_MASK]
        return slot

    def insert(self, index: int, value: int) -> AtomicWord:
        """Add a slot holding `value` at `index` and return it (radix_insert).

        Raises AlreadyExists if the index is taken; nothing changes then.
        """
        self._check_index(index)
        if self.lookup_slot(index) is not None:
            raise AlreadyExists(f"{self.name}: index {index} is already present")
        self._grow_to(index)
        assert self.root is not None
        node = self.root
        shift = RADIX_SHIFT * (self.height - 1)
        while shift:
            i = (index >> shift) & RADIX_MASK
            child = node.items[i]
            if child is None:
                child = node.items[i] = _Node()
                node.count += 1
                self.nr_nodes += 1
            node = child
            shift -= RADIX_SHIFT
        slot = self._make_slot(value, f"{self.name}[{index}]")
        node.items[index & RADIX_MASK] = slot
        node.count += 1
        self.nr_items += 1
        return slot

    def _grow_to(self, index: int) -> None:
        if self.root is None:
            # Start as tall as this index needs: growing an empty tree level by
            # level would leave a chain of empty nodes down the left edge.
            self.root = _Node()
            self.nr_nodes = 1
            self.height = 1
            while index >> (RADIX_SHIFT * self.height):
                self.height += 1
            return
        while index >> (RADIX_SHIFT * self.height):
            top = _Node()
            top.items[0] = self.root
            top.count = 1
            self.root = top
            self.nr_nodes += 1
            self.height += 1

    def delete(self, index: int) -> AtomicWord | None:
        """Remove and return the slot at `index`, pruning emptied nodes."""
        node = self.root
        if node is None or index < 0 or index >> (RADIX_SHIFT * self.height):
            return None
        path: list[tuple[_Node, int]] = []
        shift = RADIX_SHIFT * (self.height - 1)
        while shift:
            i = (index >> shift) & RADIX_MASK
            path.append((node, i))
            node = node.items[i]
            if node is None:
                return None
            shift -= RADIX_SHIFT
        i = index & RADIX_MASK
        slot: AtomicWord | None = node.items[i]
        if slot is None:
            return None
        node.items[i] = None
        node.count -= 1
        self.nr_items -= 1
        while node.count == 0 and path:
            parent, i = path.pop()
            parent.items[i] = None
            parent.count -= 1
            self.nr_nodes -= 1
            node = parent
        if self.nr_items == 0:
            self.root = None
            self.height = 0
            self.nr_nodes = 0
        return slot

    def items(self, lo: int = 0, hi: int = RADIX_MAX_INDEX + 1) -> Iterator[tuple[int, AtomicWord]]:
        """(index, slot) for each present index in [lo, hi), in order.

        The seed walks a range one index at a time and wishes for a
        `radix_next_slot()`; this is it, so a removal over a huge sparse range
        costs what is present, not the range's length.  The tree must not
        change during the walk (callers hold the page map's lock).
        """
        if self.root is not None and lo < hi:
            yield from self._walk(self.root, self.height - 1, 0, lo, hi)

    def _walk(
        self, node: _Node, level: int, base: int, lo: int, hi: int
    ) -> Iterator[tuple[int, AtomicWord]]:
        span = 1 << (RADIX_SHIFT * level)
        first = max(0, (lo - base) // span)
        last = min(RADIX_FANOUT - 1, (hi - 1 - base) // span)
        for i in range(first, last + 1):
            item = node.items[i]
            if item is None:
                continue
            start = base + i * span
            if level == 0:
                yield start, item
            else:
                yield from self._walk(item, level - 1, start, lo, hi)
