"""A radix tree from page index to frame number, 64 ways a level.

As in Akaros, a lookup hands back the page's *slot*, the word the page map
compare-and-swaps without holding the tree's writer lock.  Here the slot
words live in the frame table (one per frame, kernel/page.py), and the tree
maps an index to the frame whose slot it is; 0 means no entry (frame 0 is
never handed out).  A leaf is an array of 64 frame numbers: 8 bytes an
entry, no object per page.  Structure changes (insert, delete) happen under
the page map's lock; the tree itself has no lock and no scheduling points.

The tree is only as tall as its largest index needs, and only the paths to
present entries exist, so memory grows with the entries, not with the
largest index: one entry at index 2**52 costs nine small nodes.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from typing import Any

from pagemap.kernel.errors import AlreadyExists, InvalidArgument
from pagemap.sync.arrays import AtomicArray, WordRef
from pagemap.sync.atomic import Word

RADIX_SHIFT = 6
RADIX_FANOUT = 1 << RADIX_SHIFT
RADIX_MASK = RADIX_FANOUT - 1
RADIX_MAX_HEIGHT = 9
RADIX_MAX_INDEX = (1 << (RADIX_SHIFT * RADIX_MAX_HEIGHT)) - 1  # 2**54 - 1
# Every index a tree (so a page map) can hold, as a count: "to the end, whatever the size".
ALL_PAGES = RADIX_MAX_INDEX + 1

_EMPTY_LEAF = bytes(8 * RADIX_FANOUT)


class _Node:
    __slots__ = ("count", "items")

    def __init__(self, leaf: bool) -> None:
        # Interior nodes hold _Nodes (or None), leaves frame numbers (or 0).
        self.items: Any = array("Q", _EMPTY_LEAF) if leaf else [None] * RADIX_FANOUT
        self.count = 0


class RadixTree:
    """index -> frame number.  `slots` is the frame table's slot words, so
    that `lookup_slot` can hand back a page's slot as a Word."""

    def __init__(self, slots: AtomicArray | None = None, name: str = "tree") -> None:
        self.slots = slots
        self.name = name
        self.root: _Node | None = None
        self.height = 0  # levels below and including the root; 0 when empty
        self.nr_items = 0
        self.nr_nodes = 0

    @staticmethod
    def _check_index(index: int) -> None:
        if not 0 <= index <= RADIX_MAX_INDEX:
            raise InvalidArgument(f"radix index {index} is outside 0..{RADIX_MAX_INDEX}")

    def lookup(self, index: int) -> int:
        """The frame at `index`, or 0 (radix_lookup)."""
        node = self.root
        if node is None or index >> (RADIX_SHIFT * self.height):
            return 0
        shift = RADIX_SHIFT * (self.height - 1)
        while shift:
            node = node.items[(index >> shift) & RADIX_MASK]
            if node is None:
                return 0
            shift -= RADIX_SHIFT
        ppn: int = node.items[index & RADIX_MASK]
        return ppn

    def lookup_slot(self, index: int) -> Word | None:
        """The slot of the page at `index`, or None (radix_lookup_slot)."""
        ppn = self.lookup(index)
        if not ppn:
            return None
        assert self.slots is not None, "a tree without slot words has no slots to hand out"
        return WordRef(self.slots, ppn)

    def insert(self, index: int, ppn: int) -> None:
        """Map `index` to frame `ppn` (radix_insert).

        Raises AlreadyExists if the index is taken; nothing changes then.
        """
        self._check_index(index)
        if not ppn:
            raise InvalidArgument(f"{self.name}: frame 0 cannot be an entry")
        if self.lookup(index):
            raise AlreadyExists(f"{self.name}: index {index} is already present")
        self._grow_to(index)
        assert self.root is not None
        node = self.root
        shift = RADIX_SHIFT * (self.height - 1)
        while shift:
            i = (index >> shift) & RADIX_MASK
            child = node.items[i]
            if child is None:
                child = node.items[i] = _Node(leaf=shift == RADIX_SHIFT)
                node.count += 1
                self.nr_nodes += 1
            node = child
            shift -= RADIX_SHIFT
        node.items[index & RADIX_MASK] = ppn
        node.count += 1
        self.nr_items += 1

    def _grow_to(self, index: int) -> None:
        if self.root is None:
            # Start as tall as this index needs: growing an empty tree level by
            # level would leave a chain of empty nodes down the left edge.
            self.height = 1
            while index >> (RADIX_SHIFT * self.height):
                self.height += 1
            self.root = _Node(leaf=self.height == 1)
            self.nr_nodes = 1
            return
        while index >> (RADIX_SHIFT * self.height):
            top = _Node(leaf=False)
            top.items[0] = self.root
            top.count = 1
            self.root = top
            self.nr_nodes += 1
            self.height += 1

    def delete(self, index: int) -> int:
        """Remove the entry at `index` and return its frame (0 if none),
        pruning emptied nodes."""
        node = self.root
        if node is None or index < 0 or index >> (RADIX_SHIFT * self.height):
            return 0
        path: list[tuple[_Node, int]] = []
        shift = RADIX_SHIFT * (self.height - 1)
        while shift:
            i = (index >> shift) & RADIX_MASK
            path.append((node, i))
            node = node.items[i]
            if node is None:
                return 0
            shift -= RADIX_SHIFT
        i = index & RADIX_MASK
        ppn: int = node.items[i]
        if not ppn:
            return 0
        node.items[i] = 0
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
        return ppn

    def items(self, lo: int = 0, hi: int = RADIX_MAX_INDEX + 1) -> Iterator[tuple[int, int]]:
        """(index, frame) for each present index in [lo, hi), in order.

        The seed walks a range one index at a time and wishes for a
        `radix_next_slot()`; this is it, so a removal over a huge sparse range
        costs what is present, not the range's length.  The tree must not
        change during the walk (callers hold the page map's lock).
        """
        for base, leaf in self.leaves(lo, hi):
            first = max(lo - base, 0)
            last = min(hi - base, RADIX_FANOUT)
            for i in range(first, last):
                ppn = leaf[i]
                if ppn:
                    yield base + i, ppn

    def entries(self, lo: int = 0, hi: int = RADIX_MAX_INDEX + 1) -> list[tuple[int, int]]:
        """list(items(lo, hi)), built a leaf at a time: a removal's passes
        each take the range's entries at once."""
        out: list[tuple[int, int]] = []
        for base, leaf in self.leaves(lo, hi):
            first = max(lo - base, 0)
            last = min(hi - base, RADIX_FANOUT)
            out.extend([(base + i, leaf[i]) for i in range(first, last) if leaf[i]])
        return out

    def leaves(self, lo: int = 0, hi: int = RADIX_MAX_INDEX + 1) -> Iterator[tuple[int, Any]]:
        """(first index, leaf array) for every leaf that holds an index in
        [lo, hi), in order, walked without recursion: a removal of many pages
        visits each leaf once."""
        for base, node in self.leaf_nodes(lo, hi):
            yield base, node.items

    def clear(self, node: _Node, j: int) -> int:
        """Empty entry j of leaf `node` (from leaf_nodes) and return its frame,
        leaving emptied nodes for `prune`: a removal of many pages empties
        whole leaves without walking a path per page."""
        ppn: int = node.items[j]
        if ppn:
            node.items[j] = 0
            node.count -= 1
            self.nr_items -= 1
        return ppn

    def clear_many(self, node: _Node, js: list[int]) -> None:
        """clear(node, j) for each j, all of one leaf."""
        items = node.items
        n = 0
        for j in js:
            if items[j]:
                items[j] = 0
                n += 1
        node.count -= n
        self.nr_items -= n

    def prune(self) -> None:
        """Drop every node left empty by `clear`."""
        root = self.root
        if root is None:
            return
        if self.nr_items == 0:
            self.root = None
            self.height = 0
            self.nr_nodes = 0
            return
        self._prune(root, self.height - 1)

    def _prune(self, node: _Node, level: int) -> None:
        if level == 0:
            return
        items = node.items
        for i in range(RADIX_FANOUT):
            child = items[i]
            if child is None:
                continue
            self._prune(child, level - 1)
            if child.count == 0:
                items[i] = None
                node.count -= 1
                self.nr_nodes -= 1

    def leaf_nodes(self, lo: int = 0, hi: int = RADIX_MAX_INDEX + 1) -> Iterator[tuple[int, _Node]]:
        """(first index, leaf node) for every leaf holding an index in [lo, hi)."""
        root = self.root
        if root is None or lo >= hi:
            return
        top_shift = RADIX_SHIFT * (self.height - 1)
        if not top_shift:
            yield 0, root
            return
        # A stack of (node, its first index, the shift of its children's span).
        stack: list[tuple[_Node, int, int]] = [(root, 0, top_shift)]
        while stack:
            node, base, shift = stack.pop()
            span = 1 << shift
            first = max(0, (lo - base) >> shift)
            last = min(RADIX_MASK, (hi - 1 - base) >> shift)
            items = node.items
            if shift == RADIX_SHIFT:
                for i in range(first, last + 1):
                    child = items[i]
                    if child is not None:
                        yield base + i * span, child
                continue
            for i in range(last, first - 1, -1):  # pushed backwards, popped in order
                child = items[i]
                if child is not None:
                    stack.append((child, base + i * span, shift - RADIX_SHIFT))
