"""The superblock and the group descriptors: where everything is, checked at
mount, and written back (primary and every backup) at sync.

Rules.  `Geometry` is immutable after mount.  Each group's descriptor lives in
memory while mounted (`Group.desc`); its free counts change only under the
group's spinlock (see balloc.py), and `write_super` copies every descriptor
and the superblock's totals into their buffers, in the primary location and in
each backup group (every group without sparse_super; groups 0, 1 and powers
of 3, 5 and 7 with it), as e2fsck expects them.  The superblock's own free
counts are not kept up to date between syncs (Linux's ext2 does the same):
they are the sums of the groups' counts, computed when written.
"""

from __future__ import annotations

from dataclasses import dataclass

from pagemap.kernel.blockdev import BlockDevice
from pagemap.kernel.fs.ext2.errors import Corrupt, Unsupported
from pagemap.kernel.fs.ext2.layout import (
    COMPAT_NAMES,
    COMPAT_RW_OK,
    DYNAMIC_REV,
    GOOD_OLD_FIRST_INO,
    GOOD_OLD_INODE_SIZE,
    GROUP_DESC_SIZE,
    INCOMPAT_FILETYPE,
    INCOMPAT_NAMES,
    INCOMPAT_SUPPORTED,
    MAGIC,
    RO_COMPAT_NAMES,
    RO_COMPAT_SPARSE_SUPER,
    RO_COMPAT_SUPPORTED,
    SUPERBLOCK_OFFSET,
    SUPERBLOCK_SIZE,
    GroupDesc,
    SuperBlock,
    feature_names,
)
from pagemap.sync.executor import Executor
from pagemap.sync.locks import SpinLock

MAX_LOG_BLOCK_SIZE = 2  # 4 KiB: a block may not be larger than a page


def _is_power_of(n: int, base: int) -> bool:
    while n > 1 and n % base == 0:
        n //= base
    return n == 1


@dataclass(frozen=True)
class Geometry:
    """The shape of the filesystem, derived from a checked superblock."""

    block_size: int
    blocks_count: int
    first_data_block: int
    blocks_per_group: int
    inodes_per_group: int
    inodes_count: int
    inode_size: int
    first_ino: int
    groups: int
    desc_blocks: int
    reserved_gdt: int
    itable_blocks: int
    sparse_super: bool
    filetype: bool

    @property
    def addr_per_block(self) -> int:
        return self.block_size // 4

    @property
    def inodes_per_block(self) -> int:
        return self.block_size // self.inode_size

    @property
    def sectors_per_block(self) -> int:
        return self.block_size // 512

    def group_start(self, g: int) -> int:
        return self.first_data_block + g * self.blocks_per_group

    def group_end(self, g: int) -> int:
        """One past the group's last block (the last group may be short)."""
        return min(self.group_start(g + 1), self.blocks_count)

    def group_of(self, blk: int) -> int:
        return (blk - self.first_data_block) // self.blocks_per_group

    def has_super(self, g: int) -> bool:
        if not self.sparse_super or g <= 1:
            return True
        return _is_power_of(g, 3) or _is_power_of(g, 5) or _is_power_of(g, 7)

    def super_area(self, g: int) -> int:
        """Blocks at the group's start holding a superblock copy, the group
        descriptors and the blocks reserved for their growth (0 if none)."""
        return 1 + self.desc_blocks + self.reserved_gdt if self.has_super(g) else 0

    def desc_location(self, g: int) -> tuple[int, int]:
        """(block, offset) of group g's descriptor in the primary table."""
        per_block = self.block_size // GROUP_DESC_SIZE
        return (
            self.first_data_block + 1 + g // per_block,
            (g % per_block) * GROUP_DESC_SIZE,
        )

    def inode_location(self, ino: int, table: int) -> tuple[int, int]:
        """(block, offset) of inode `ino` given its group's inode table."""
        index = (ino - 1) % self.inodes_per_group
        return table + index // self.inodes_per_block, (index % self.inodes_per_block) * (
            self.inode_size
        )

    def max_file_blocks(self) -> int:
        apb = self.addr_per_block
        return 12 + apb + apb * apb + apb * apb * apb


class Group:
    """One block group: its descriptor, and the lock over its bitmaps and counts."""

    def __init__(self, index: int, desc: GroupDesc, lock: SpinLock) -> None:
        self.index = index
        self.desc = desc
        self.lock = lock

    def is_metadata(self, geo: Geometry, blk: int) -> bool:
        d = self.desc
        start = geo.group_start(self.index)
        return (
            start <= blk < start + geo.super_area(self.index)
            or blk in (d.block_bitmap, d.inode_bitmap)
            or d.inode_table <= blk < d.inode_table + geo.itable_blocks
        )


def check_superblock(sb: SuperBlock, image_bytes: int, writable: bool) -> Geometry:
    """The geometry of a superblock that passes every check; Corrupt for a
    field that cannot be right, Unsupported for a feature not handled."""
    if sb.magic != MAGIC:
        raise Corrupt(f"superblock: magic number {sb.magic:#06x} is not ext2's {MAGIC:#06x}")
    if sb.rev_level > DYNAMIC_REV:
        raise Unsupported(f"superblock: revision {sb.rev_level} is newer than this driver's 1")
    _check_features(sb, writable)
    if sb.log_block_size > MAX_LOG_BLOCK_SIZE:
        if sb.log_block_size <= 6:
            raise Unsupported(
                f"superblock: block size {1024 << sb.log_block_size} is larger than a page "
                f"(4096): not supported"
            )
        raise Corrupt(f"superblock: log block size {sb.log_block_size} is out of range")
    bs = 1024 << sb.log_block_size
    _check(sb.first_data_block == (1 if bs == 1024 else 0), "first data block", sb, bs)
    bpg, ipg = sb.blocks_per_group, sb.inodes_per_group
    _check(8 <= bpg <= 8 * bs and bpg % 8 == 0, "blocks per group", sb, bs)
    _check(1 <= ipg <= 8 * bs, "inodes per group", sb, bs)
    isz = sb.inode_size
    _check(
        GOOD_OLD_INODE_SIZE <= isz <= bs and isz & (isz - 1) == 0,
        "inode size",
        sb,
        bs,
    )
    _check(sb.blocks_count > sb.first_data_block, "blocks count", sb, bs)
    groups = (sb.blocks_count - sb.first_data_block + bpg - 1) // bpg
    _check(sb.inodes_count == groups * ipg, "inodes count", sb, bs)
    _check(GOOD_OLD_FIRST_INO <= sb.first_ino < sb.inodes_count, "first non-reserved inode", sb, bs)
    _check(sb.r_blocks_count <= sb.blocks_count, "reserved blocks count", sb, bs)
    desc_blocks = (groups * GROUP_DESC_SIZE + bs - 1) // bs
    _check(sb.reserved_gdt_blocks <= bs // 4, "reserved GDT blocks", sb, bs)
    itable = (ipg * isz + bs - 1) // bs
    _check(1 + desc_blocks + sb.reserved_gdt_blocks + 2 + itable <= bpg, "group layout", sb, bs)
    need = sb.blocks_count * bs
    if need > image_bytes:
        raise Corrupt(
            f"superblock: the filesystem has {sb.blocks_count} blocks of {bs} bytes "
            f"({need} bytes) but the image holds only {image_bytes}: it is truncated"
        )
    return Geometry(
        block_size=bs,
        blocks_count=sb.blocks_count,
        first_data_block=sb.first_data_block,
        blocks_per_group=bpg,
        inodes_per_group=ipg,
        inodes_count=sb.inodes_count,
        inode_size=isz,
        first_ino=sb.first_ino,
        groups=groups,
        desc_blocks=desc_blocks,
        reserved_gdt=sb.reserved_gdt_blocks,
        itable_blocks=itable,
        sparse_super=bool(sb.feature_ro_compat & RO_COMPAT_SPARSE_SUPER),
        filetype=bool(sb.feature_incompat & INCOMPAT_FILETYPE),
    )


def _check(ok: bool, what: str, sb: SuperBlock, bs: int) -> None:
    if not ok:
        raise Corrupt(
            f"superblock: the {what} is inconsistent (blocks {sb.blocks_count}, inodes "
            f"{sb.inodes_count}, block size {bs}, blocks/group {sb.blocks_per_group}, "
            f"inodes/group {sb.inodes_per_group}, inode size {sb.inode_size}, first data "
            f"block {sb.first_data_block}, first inode {sb.first_ino}, reserved "
            f"{sb.r_blocks_count}, reserved GDT {sb.reserved_gdt_blocks})"
        )


def _check_features(sb: SuperBlock, writable: bool) -> None:
    bad = sb.feature_incompat & ~INCOMPAT_SUPPORTED
    if bad:
        raise Unsupported(
            f"superblock: incompatible feature(s) not supported: "
            f"{feature_names(bad, INCOMPAT_NAMES)}"
        )
    if not writable:
        return
    bad = sb.feature_ro_compat & ~RO_COMPAT_SUPPORTED
    if bad:
        raise Unsupported(
            f"superblock: read-only-compatible feature(s) not supported for writing: "
            f"{feature_names(bad, RO_COMPAT_NAMES)} (mount it read-only)"
        )
    bad = sb.feature_compat & ~COMPAT_RW_OK
    if bad:
        raise Unsupported(
            f"superblock: compatible feature(s) this driver cannot keep intact while "
            f"writing: {feature_names(bad, COMPAT_NAMES)} (mount it read-only)"
        )


def read_superblock(dev: BlockDevice) -> SuperBlock:
    """The primary superblock, read straight from the image (the block size
    is not known until it is read)."""
    if dev.nr_bytes < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE:
        raise Corrupt(
            f"{dev.name}: the image has {dev.nr_bytes} bytes, too few to hold a superblock"
        )
    raw = dev.read_blocks(SUPERBLOCK_OFFSET // SUPERBLOCK_SIZE, 1, SUPERBLOCK_SIZE)
    return SuperBlock.parse(raw)


def superblock_location(geo: Geometry, g: int) -> tuple[int, int]:
    """(block, offset) of the superblock copy in group g."""
    if g == 0:
        return divmod(SUPERBLOCK_OFFSET, geo.block_size)
    return geo.group_start(g), 0


def read_groups(dev: BlockDevice, geo: Geometry, executor: Executor) -> list[Group]:
    """Every group descriptor, read through the buffer cache and checked, as
    Linux's ext2_check_descriptors does (and a little more)."""
    groups: list[Group] = []
    for g in range(geo.groups):
        blk, off = geo.desc_location(g)
        bh = dev.get_buffer(blk, geo.block_size)
        try:
            desc = GroupDesc.parse(bh.data[off : off + GROUP_DESC_SIZE])
        finally:
            dev.put_buffer(bh)
        group = Group(g, desc, executor.spinlock(f"{dev.name}.group{g}"))
        _check_group(geo, group)
        groups.append(group)
    return groups


def _check_group(geo: Geometry, group: Group) -> None:
    g, d = group.index, group.desc
    lo, hi = geo.group_start(g) + geo.super_area(g), geo.group_end(g)
    where = f"group descriptor {g}"
    for what, blk, n in (
        ("block bitmap", d.block_bitmap, 1),
        ("inode bitmap", d.inode_bitmap, 1),
        ("inode table", d.inode_table, geo.itable_blocks),
    ):
        if not lo <= blk or blk + n > hi:
            raise Corrupt(
                f"{where}: the {what} at block {blk} ({n} block(s)) is outside the "
                f"group's blocks {lo}..{hi - 1}"
            )
    table = range(d.inode_table, d.inode_table + geo.itable_blocks)
    if d.block_bitmap == d.inode_bitmap or d.block_bitmap in table or d.inode_bitmap in table:
        raise Corrupt(f"{where}: the bitmaps and the inode table overlap")
    if d.free_blocks_count > hi - geo.group_start(g):
        raise Corrupt(f"{where}: {d.free_blocks_count} free blocks in a smaller group")
    if d.free_inodes_count > geo.inodes_per_group or d.used_dirs_count > geo.inodes_per_group:
        raise Corrupt(
            f"{where}: {d.free_inodes_count} free inodes and {d.used_dirs_count} "
            f"directories in a group of {geo.inodes_per_group} inodes"
        )


def write_super(dev: BlockDevice, geo: Geometry, sb: SuperBlock, groups: list[Group]) -> None:
    """Copy the descriptors and the superblock (its free counts summed from
    the groups) into their buffers, primary and backups, dirtying only what
    changed."""
    sb.free_blocks_count = sum(g.desc.free_blocks_count for g in groups)
    sb.free_inodes_count = sum(g.desc.free_inodes_count for g in groups)
    gdt = bytearray(geo.desc_blocks * geo.block_size)
    for group in groups:
        blk, off = geo.desc_location(group.index)
        with group.lock:
            desc = GroupDesc(**group.desc.__dict__)
        _merge_desc(dev, geo, blk, off, desc, gdt)
    primary = _write_sb_copy(dev, geo, sb, 0, None)
    for g in range(1, geo.groups):
        if not geo.has_super(g):
            continue
        _write_sb_copy(dev, geo, sb, g, primary)
        start = geo.group_start(g) + 1
        for i in range(geo.desc_blocks):
            _write_block(dev, geo, start + i, gdt[i * geo.block_size : (i + 1) * geo.block_size])


def _merge_desc(
    dev: BlockDevice, geo: Geometry, blk: int, off: int, desc: GroupDesc, gdt: bytearray
) -> None:
    """Write one descriptor into the primary table's buffer; keep the whole
    block's new bytes in `gdt` for the backups."""
    bh = dev.get_buffer(blk, geo.block_size)
    try:
        new = bytearray(bh.data)
        desc.pack_into(new, off)
        if new != bh.data:
            bh.data[:] = new
            dev.dirty_buffer(bh)
        i = blk - geo.first_data_block - 1
        gdt[i * geo.block_size : (i + 1) * geo.block_size] = new
    finally:
        dev.put_buffer(bh)


def _write_sb_copy(
    dev: BlockDevice, geo: Geometry, sb: SuperBlock, g: int, primary: bytes | None
) -> bytes:
    """The superblock copy of group g: the primary's bytes, with s_block_group_nr
    set to g in a backup; returns the bytes written."""
    blk, off = superblock_location(geo, g)
    bh = dev.get_buffer(blk, geo.block_size)
    try:
        if primary is None:
            new = bytearray(bh.data[off : off + SUPERBLOCK_SIZE])
            copy = sb.copy()
            copy.block_group_nr = 0
            copy.pack_into(new)
        else:
            new = bytearray(primary)
            copy = sb.copy()
            copy.block_group_nr = g if sb.rev_level >= DYNAMIC_REV else 0
            copy.pack_into(new)
        if new != bh.data[off : off + SUPERBLOCK_SIZE]:
            bh.data[off : off + SUPERBLOCK_SIZE] = new
            dev.dirty_buffer(bh)
        return bytes(new) if primary is None else primary
    finally:
        dev.put_buffer(bh)


def _write_block(dev: BlockDevice, geo: Geometry, blk: int, data: bytes | bytearray) -> None:
    bh = dev.get_buffer(blk, geo.block_size)
    try:
        if bytes(bh.data) != bytes(data):
            bh.data[:] = data
            dev.dirty_buffer(bh)
    finally:
        dev.put_buffer(bh)
