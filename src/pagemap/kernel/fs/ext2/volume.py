"""A mounted ext2 volume's shared state (Linux's ext2_sb_info): the device,
its geometry, the in-memory superblock and groups, the allocator, the clock.

Rules.  Everything here is set at mount and read without a lock afterwards,
except the superblock fields that change while mounted (state, feature
bits, times), which change under `sb_lock`, and the groups' counts (their own
locks, see balloc.py).  `check_writable` is what every modifying call asks
first: a read-only mount, or one that has been unmounted, refuses.
"""

from __future__ import annotations

from collections.abc import Callable

from pagemap.kernel.blockdev import BlockDevice
from pagemap.kernel.errors import IOFailure
from pagemap.kernel.fs.ext2.balloc import Allocator
from pagemap.kernel.fs.ext2.errors import ReadOnly
from pagemap.kernel.fs.ext2.layout import SuperBlock
from pagemap.kernel.fs.ext2.super import Geometry, Group, write_super
from pagemap.sync.executor import Executor

Clock = Callable[[], int]


class Volume:
    def __init__(
        self,
        executor: Executor,
        dev: BlockDevice,
        sb: SuperBlock,
        geo: Geometry,
        groups: list[Group],
        readonly: bool,
        clock: Clock,
    ) -> None:
        self.executor = executor
        self.dev = dev
        self.name = dev.name
        self.sb = sb
        self.geo = geo
        self.groups = groups
        self.alloc = Allocator(dev, geo, groups)
        self.readonly = readonly
        self.clock = clock
        self.sb_lock = executor.spinlock(f"{dev.name}.sb_lock")
        self.mounted = True
        # The largest file: every block the map can reach, but no more than
        # i_blocks (32 bits of 512-byte sectors) can count.
        sectors_cap = ((1 << 32) - 1) // geo.sectors_per_block * geo.block_size
        self.max_file_size = min(geo.max_file_blocks() * geo.block_size, sectors_cap)

    def now(self) -> int:
        return self.clock() & 0xFFFFFFFF

    def check_mounted(self, what: str) -> None:
        if not self.mounted:
            raise IOFailure(f"{self.name}: {what} after the filesystem was unmounted")

    def check_writable(self, what: str) -> None:
        self.check_mounted(what)
        if self.readonly:
            raise ReadOnly(f"{self.name}: {what}: the filesystem is mounted read-only")

    def set_ro_compat(self, bit: int) -> None:
        with self.sb_lock:
            self.sb.feature_ro_compat |= bit

    def write_super(self) -> None:
        """Superblock and descriptors into their buffers (see super.py)."""
        with self.sb_lock:
            self.sb.wtime = self.now()
            sb = self.sb.copy()
        write_super(self.dev, self.geo, sb, self.groups)
