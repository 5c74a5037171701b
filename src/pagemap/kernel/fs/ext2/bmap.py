"""An inode's block map: file block -> device block, through i_block's 12
direct pointers and its single, double and triple indirect blocks.

Rules.  `lock` (a spinlock, the inode's map lock) is held only while words
of the map change (i_block, an entry of an indirect block), with i_blocks and
the set of fresh blocks; never across get_buffer or any other wait, so the
flusher's writepage can always take it (see balloc.py for why that matters).

- lookup reads the map without the lock.  A word it reads is either the
  block it names or zero, never a torn value (one 4-byte slice); and no
  block it walks through can be freed under it: truncate frees only blocks
  past the new size, after the pages past it are gone and with the last page
  locked (inode.py), and a lookup is only ever for a page held locked or
  referenced below the size it read.
- allocate walks the map, allocates every block it lacks (indirect blocks
  and the data block) with no lock held, fills the new indirect blocks, and
  then splices the new branch in under the lock, if the slot it found empty
  still is.  Another allocator may have filled it meanwhile (write() and a
  writepage of the same file, Linux's "verify the chain" case): then the new
  blocks are freed and it walks again.  A branch is all or nothing: on
  ENOSPC the blocks it got are freed and nothing was spliced.
- truncate first reads all it needs and holds the buffers it will change
  (changing nothing, so a failure there leaves the map whole), then zeroes
  the words past the new end under the lock, and only then frees the blocks
  they named; an indirect block it frees is forgotten by the device cache
  (forget_buffer) before it can be reused for file data.

`fresh` holds data blocks allocated but not yet written: their bytes on disk
are some old file's, so readpage must give zeros for them, and the inode
writes zeros over any still fresh when it syncs.
"""

from __future__ import annotations

from pagemap.kernel.blockdev import BlockDevice, BufferHead
from pagemap.kernel.fs.ext2.balloc import Allocator
from pagemap.kernel.fs.ext2.errors import Corrupt, NoSpace, TooBig
from pagemap.kernel.fs.ext2.layout import N_BLOCKS, NDIR_BLOCKS, put_u32, u32
from pagemap.kernel.fs.ext2.super import Geometry
from pagemap.sync.core import READ, WRITE
from pagemap.sync.locks import SpinLock


class _Plan:
    """What a truncate will change: i_block slots to zero, (indirect block
    buffer, first entry to zero) pairs, and the data and indirect blocks to
    free."""

    def __init__(self) -> None:
        self.slots: list[int] = []
        self.edits: list[tuple[BufferHead, int]] = []
        self.data: list[int] = []
        self.indirect: dict[int, None] = {}  # ordered, and a quick "seen before?"

    def freed(self) -> list[int]:
        return self.data + list(self.indirect)


def block_path(n: int, apb: int) -> list[int]:
    """The slots leading to file block n: [i_block slot, index at each level]."""
    if n < NDIR_BLOCKS:
        return [n]
    n -= NDIR_BLOCKS
    if n < apb:
        return [12, n]
    n -= apb
    if n < apb * apb:
        return [13, n // apb, n % apb]
    n -= apb * apb
    if n < apb * apb * apb:
        return [14, n // (apb * apb), (n // apb) % apb, n % apb]
    raise TooBig(f"file block {n} is past the largest an ext2 inode can map")


class BlockMap:
    def __init__(
        self,
        dev: BlockDevice,
        geo: Geometry,
        alloc: Allocator,
        name: str,
        i_block: list[int],
        blocks512: int,
        lock: SpinLock,
    ) -> None:
        if len(i_block) != N_BLOCKS:
            raise ValueError(f"i_block has {N_BLOCKS} slots, not {len(i_block)}")
        self.dev = dev
        self.geo = geo
        self.alloc = alloc
        self.name = name
        self.i_block = i_block
        self.blocks512 = blocks512
        self.lock = lock
        self.fresh: set[int] = set()
        # Directory blocks are cached by the device (dir.py): forget them
        # too when they are freed, not only the indirect blocks.
        self.cached_data = False
        self.goal = 0  # where the next allocation looks first (a hint)
        # The footprints of the map's words (i_block) and of `fresh`: plain
        # Python state, named in the step that reads or changes it, so that the
        # checker orders a lookup without the lock against a splice under it.
        # Without them DPOR took a write()'s lookup as independent of a
        # page_mkwrite's splice of the same hole (ext2-hole-race under "wp",
        # test_dpor_equivalence.py): a final state DFS reaches went unexplored.
        self._map_key = (f"{lock.name}.i_block", 0)
        self._fresh_key = (f"{lock.name}.fresh", 0)
        # The allocation hint too: read before an allocation, set after a
        # splice, both without the lock; which block the next allocation
        # takes depends on the order (ext2-hole-race's two allocators; found
        # by the hidden-state check, check/hidden.py).
        self._goal_key = (f"{lock.name}.goal", 0)

    def _touch_map(self, access: int) -> None:
        self.dev.executor.touch(self._map_key, access)

    def _touch_fresh(self, access: int) -> None:
        self.dev.executor.touch(self._fresh_key, access)

    # -- lookup -----------------------------------------------------------------------
    def _where(self, n: int) -> str:
        return f"{self.name}, file block {n}"

    def _indirect(self, blk: int, n: int) -> BufferHead:
        self.alloc.check_data_block(blk, self._where(n) + " (an indirect block)")
        return self.dev.get_buffer(blk, self.geo.block_size)

    def lookup(self, n: int) -> int:
        """The device block holding file block n, 0 for a hole."""
        path = block_path(n, self.geo.addr_per_block)
        self._touch_map(READ)
        blk = self.i_block[path[0]]
        for idx in path[1:]:
            if not blk:
                return 0
            bh = self._indirect(blk, n)
            try:
                blk = u32(bh.data, idx * 4)
            finally:
                self.dev.put_buffer(bh)
        if blk:
            self.alloc.check_data_block(blk, self._where(n))
        return blk

    def lookup_run(self, first: int, count: int) -> list[int]:
        """lookup of `count` consecutive file blocks, reading each indirect
        block once."""
        apb = self.geo.addr_per_block
        seen: dict[int, bytes] = {}
        out: list[int] = []
        self._touch_map(READ)
        for n in range(first, first + count):
            path = block_path(n, apb)
            blk = self.i_block[path[0]]
            for idx in path[1:]:
                if not blk:
                    break
                data = seen.get(blk)
                if data is None:
                    bh = self._indirect(blk, n)
                    try:
                        data = seen[blk] = bytes(bh.data)
                    finally:
                        self.dev.put_buffer(bh)
                blk = u32(data, idx * 4)
            if blk:
                self.alloc.check_data_block(blk, self._where(n))
            out.append(blk)
        return out

    def is_fresh(self, blk: int) -> bool:
        self._touch_fresh(READ)
        return blk in self.fresh

    def written(self, blocks: list[int]) -> None:
        """These blocks now hold their file's bytes on disk."""
        self._touch_fresh(READ)
        if self.fresh:
            with self.lock:
                self._touch_fresh(WRITE)
                self.fresh.difference_update(blocks)

    # -- allocation ---------------------------------------------------------------------
    def allocate(self, n: int, fresh: bool) -> int:
        """The device block of file block n, allocating it (and any indirect
        block on the way) if it is a hole.  `fresh`: the caller will not write
        the whole block through a buffer (file data), so until it is written
        it reads as zeros."""
        apb = self.geo.addr_per_block
        path = block_path(n, apb)
        while True:
            held: list[BufferHead] = []
            try:
                blk, holder, depth = self._walk(path, n, held)
                if blk:
                    return blk
                got = self._splice(path, n, holder, depth, fresh)
                if got:
                    return got
            finally:
                for bh in held:
                    self.dev.put_buffer(bh)

    def _walk(
        self, path: list[int], n: int, held: list[BufferHead]
    ) -> tuple[int, BufferHead | None, int]:
        """Follow the path; (block, None, depth) if mapped, else (0, the buffer
        holding the empty slot or None for i_block, the depth of that slot)."""
        self._touch_map(READ)
        blk = self.i_block[path[0]]
        holder: BufferHead | None = None
        depth = 0
        for depth in range(1, len(path)):
            if not blk:
                return 0, holder, depth - 1
            holder = self._indirect(blk, n)
            held.append(holder)
            blk = u32(holder.data, path[depth] * 4)
        if blk:
            self.alloc.check_data_block(blk, self._where(n))
            return blk, None, len(path) - 1
        return 0, holder, len(path) - 1

    def _splice(
        self, path: list[int], n: int, holder: BufferHead | None, depth: int, fresh: bool
    ) -> int:
        """Allocate the branch below path[depth] and hook it in; 0 if another
        allocator filled the slot first (the caller walks again)."""
        need = len(path) - depth  # indirect blocks below the slot, and the data block
        new: list[int] = []
        try:
            self.dev.executor.touch(self._goal_key, READ)
            goal = self.goal or self.geo.first_data_block
            for _ in range(need):
                new.append(self.alloc.alloc_block(goal))
                goal = new[-1] + 1
            for i in range(need - 1):
                self._init_indirect(new[i], path[depth + 1 + i], new[i + 1])
        except BaseException:
            self._undo(new, need - 1)
            raise
        spliced = False
        slot = path[depth]
        with self.lock:
            self._touch_map(READ)
            cur = self.i_block[slot] if holder is None else u32(holder.data, slot * 4)
            if not cur:
                if holder is None:
                    self._touch_map(WRITE)
                    self.i_block[slot] = new[0]
                else:
                    put_u32(holder.data, slot * 4, new[0])
                    self.dev.dirty_buffer(holder)
                self.blocks512 += need * self.geo.sectors_per_block
                if fresh:
                    self._touch_fresh(WRITE)
                    self.fresh.add(new[-1])
                spliced = True
        if not spliced:
            self._undo(new, need - 1)
            return 0
        self.dev.executor.touch(self._goal_key, WRITE)
        self.goal = new[-1] + 1
        return new[-1]

    def _init_indirect(self, blk: int, idx: int, child: int) -> None:
        bh = self.dev.get_buffer(blk, self.geo.block_size)
        try:
            bh.data[:] = bytes(self.geo.block_size)
            bh.data[idx * 4 : idx * 4 + 4] = child.to_bytes(4, "little")
            self.dev.dirty_buffer(bh)
        finally:
            self.dev.put_buffer(bh)

    def _undo(self, new: list[int], nr_indirect: int) -> None:
        """Give back a branch that was never spliced in."""
        for blk in new[:nr_indirect]:
            self.dev.forget_buffer(blk, self.geo.block_size)
        if new:
            self.alloc.free_blocks(new, f"{self.name}: undoing an allocation")

    # -- truncation ---------------------------------------------------------------------
    def truncate(self, keep: int) -> int:
        """Free every block mapping file blocks >= keep; the blocks freed.

        All or nothing, in two phases.  The first reads what must be read
        (every indirect block of the branches to free, each group bitmap
        they touch) and holds the buffers it will change, changing nothing:
        a failure there (no frame, a read error, a corrupt pointer) leaves
        the map, i_blocks and the bitmaps as they were, for the caller to
        try again later (inode.py's trim).  The second cannot fail for want
        of memory or I/O: it zeroes the words under the map lock, then
        frees the blocks through the buffers still held.  Freeing part of a
        branch and failing on the rest would leave blocks that no map names
        but the bitmap still holds, and an i_blocks that counts them
        (test_a_shrinking_truncate_that_fails_part_way_leaks_nothing).
        """
        held: list[BufferHead] = []
        try:
            plan = self._plan(keep, held)
            if plan is None:
                return 0
            return self._apply(plan)
        finally:
            for bh in held:
                self.dev.put_buffer(bh)

    def _plan(self, keep: int, held: list[BufferHead]) -> _Plan | None:
        """Phase one of truncate: what to zero and free; None if nothing."""
        apb = self.geo.addr_per_block
        plan = _Plan()
        self._touch_map(READ)
        for k in range(min(keep, NDIR_BLOCKS), NDIR_BLOCKS):
            if self.i_block[k]:
                plan.data.append(self.i_block[k])
                plan.slots.append(k)
        base = NDIR_BLOCKS
        for level, slot in ((1, 12), (2, 13), (3, 14)):
            top = self.i_block[slot]
            if top and keep < base + apb**level:
                if keep <= base:
                    plan.slots.append(slot)
                    self._collect(top, level, base, plan.data, plan.indirect)
                else:
                    self._plan_cut(top, level, base, keep - base, plan, held)
            base += apb**level
        freed = plan.freed()
        if not freed:
            return None
        where = f"{self.name}: truncate"
        for blk in freed:
            self.alloc.check_data_block(blk, where)
        # The bitmaps the frees will change, read now and held until they are
        # done: free_blocks then finds every one cached.
        for g in sorted({self.geo.group_of(blk) for blk in freed}):
            held.append(self.alloc.hold_bitmap(g))
        return plan

    def _plan_cut(
        self, blk: int, level: int, first_n: int, keep_rel: int, plan: _Plan, held: list[BufferHead]
    ) -> None:
        """In indirect block `blk` (covering file blocks from first_n), every
        entry past keep_rel is to be dropped, and the entry keep_rel falls in
        cut in turn; the block's buffer is held for phase two."""
        apb = self.geo.addr_per_block
        child_span = apb ** (level - 1)
        whole_from = (keep_rel + child_span - 1) // child_span
        bh = self._indirect(blk, first_n)
        held.append(bh)
        raw = bytes(bh.data)
        dropped = [(i, u32(raw, i * 4)) for i in range(whole_from, apb) if u32(raw, i * 4)]
        if dropped:
            plan.edits.append((bh, whole_from))
        for i, child in dropped:
            if level == 1:
                plan.data.append(child)
            else:
                self._collect(child, level - 1, first_n + i * child_span, plan.data, plan.indirect)
        partial = u32(raw, (keep_rel // child_span) * 4) if keep_rel % child_span else 0
        if partial and level > 1:
            self._plan_cut(
                partial,
                level - 1,
                first_n + (keep_rel // child_span) * child_span,
                keep_rel % child_span,
                plan,
                held,
            )

    def _apply(self, plan: _Plan) -> int:
        """Phase two of truncate: nothing here allocates or reads."""
        freed = plan.freed()
        with self.lock:
            self._touch_map(WRITE)
            self._touch_fresh(WRITE)
            for slot in plan.slots:
                self.i_block[slot] = 0
            for bh, first in plan.edits:
                bh.data[first * 4 :] = bytes(len(bh.data) - first * 4)
                self.dev.dirty_buffer(bh)
            self._uncount(len(freed) * self.geo.sectors_per_block)
            self.fresh.difference_update(plan.data)
        for blk in freed if self.cached_data else plan.indirect:
            self.dev.forget_buffer(blk, self.geo.block_size)
        # Only now, with no map naming them, may the bitmap hand them out
        # again: freed any earlier, a concurrent allocator could give a block
        # to another file while this one still names it (the
        # ext2-append-truncate scenario; its frees-first mutant is caught).
        self.alloc.free_blocks(freed, f"{self.name}: truncate")
        return len(freed)

    def _uncount(self, sectors: int) -> None:
        """i_blocks less `sectors` (map lock held).  A corrupt count smaller
        than the blocks the map really has stops at zero rather than turn
        into a number the inode cannot hold."""
        self.blocks512 = max(0, self.blocks512 - sectors)

    def _entries(self, blk: int, first_n: int) -> list[int]:
        bh = self._indirect(blk, first_n)
        try:
            raw = bytes(bh.data)
        finally:
            self.dev.put_buffer(bh)
        return [u32(raw, i * 4) for i in range(self.geo.addr_per_block)]

    def _collect(
        self, blk: int, level: int, first_n: int, data: list[int], indirect: dict[int, None]
    ) -> None:
        """Every block of the subtree under indirect block `blk`.

        An indirect block met twice is corruption: a walk that trusted such a
        map could visit the same subtree a billion times."""
        if blk in indirect:
            raise Corrupt(f"{self._where(first_n)}: indirect block {blk} appears twice in the map")
        apb = self.geo.addr_per_block
        for i, child in enumerate(self._entries(blk, first_n)):
            if not child:
                continue
            if level == 1:
                data.append(child)
            else:
                self._collect(child, level - 1, first_n + i * apb ** (level - 1), data, indirect)
        indirect[blk] = None

    def all_blocks(self) -> tuple[list[int], list[int]]:
        """(data blocks, indirect blocks) of the whole map, for checks."""
        data: list[int] = [b for b in self.i_block[:NDIR_BLOCKS] if b]
        indirect: dict[int, None] = {}
        apb = self.geo.addr_per_block
        base = NDIR_BLOCKS
        for level, slot in ((1, 12), (2, 13), (3, 14)):
            if self.i_block[slot]:
                self._collect(self.i_block[slot], level, base, data, indirect)
            base += apb**level
        return data, list(indirect)


__all__ = ["BlockMap", "NoSpace", "block_path"]
