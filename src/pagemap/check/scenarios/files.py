"""File and block-device scenarios: pwrite, truncate and buffer heads racing removal.

The scenarios with an injected host fault (eio-*) are in files_eio.py;
SCENARIOS here is the family's registry, in its order, and PENDING the
scenarios kept out of it.
"""

from __future__ import annotations

import contextlib
import os

from pagemap.check.context import RunContext
from pagemap.check.scenario import Params, Scenario
from pagemap.check.scenarios.files_eio import _eio_fsync, _eio_read, _eio_sync, _eio_truncate
from pagemap.check.shadow import SLOT, ShadowFile, initial_bytes
from pagemap.hw.memory import PGSIZE
from pagemap.kernel.errors import BusError
from pagemap.kernel.mman import MAP_SHARED, PROT_READ, PROT_WRITE
from pagemap.oracles import COHERENCE, DURABILITY
from pagemap.oracles.accounting import no_leak, quiescent
from pagemap.oracles.coherence import describe
from pagemap.oracles.durability import nothing_lost
from pagemap.sync.core import WRITE


def _pwrite_remove(ctx: RunContext, p: Params) -> None:
    f = ShadowFile(ctx, 1)
    proc = ctx.machine.process()
    base = f.map(proc, 1, PROT_READ | PROT_WRITE, MAP_SHARED)

    f.store(proc, base + SLOT)  # slot 1, dirty through the mapping

    def pwriter() -> None:
        for _ in range(p["rounds"]):
            f.pwrite(0)  # slot 0, checked with pread after each write
        f.pread(SLOT)

    def remover() -> None:
        f.pm.remove_contig(0, 1)
        f.no_stale_translation()

    ctx.machine.spawn(pwriter, name="pwrite")
    ctx.machine.spawn(remover, name="remover")
    f.end_checks()


def _read_run_remove(ctx: RunContext, p: Params) -> None:
    # Two cached pages; one pread of both takes them as one run
    # (PageMap.find_run), while a pwrite writes slot 0 of the second page
    # and a remover evicts the file.
    pages = 2
    f = ShadowFile(ctx, pages)
    f.file.pread(pages * PGSIZE, 0)  # cached, so the reader's pread finds a run
    middle = PGSIZE

    def reader() -> None:
        got = f.file.pread(pages * PGSIZE, 0)
        now = f.shadow.expect(0, pages * PGSIZE)
        # Every slot but the one being written is what the file held all
        # along; that one is a version its writer wrote, or the first.
        seen = got[middle : middle + SLOT]
        if got[:middle] + got[middle + SLOT :] != now[:middle] + now[middle + SLOT :] or (
            seen not in {initial_bytes(pages)[middle : middle + SLOT], *f.written}
        ):
            bad = next(i for i in range(len(got)) if got[i] != now[i]) // SLOT * SLOT
            ctx.fail(
                COHERENCE,
                f"{ctx.who()} read {describe(got[bad : bad + SLOT])} at offset {bad} in one "
                f"pread of {pages} pages, but the file held {describe(now[bad : bad + SLOT])}",
            )

    def pwriter() -> None:
        for _ in range(p["rounds"]):
            f.pwrite(middle)

    def remover() -> None:
        f.pm.remove_contig(0, pages)

    ctx.machine.spawn(reader, name="reader")
    ctx.machine.spawn(pwriter, name="pwrite")
    ctx.machine.spawn(remover, name="remover")
    f.end_checks()


def _pwrite_store(ctx: RunContext, p: Params) -> None:
    f = ShadowFile(ctx, 1)
    proc = ctx.machine.process()
    base = f.map(proc, 1, PROT_READ | PROT_WRITE, MAP_SHARED)

    def pwriter() -> None:
        f.pwrite(0)  # slot 0

    def storer() -> None:
        f.store(proc, base + SLOT)  # slot 1 of the same page, through the mapping
        f.pread(SLOT)  # a store is visible to read() at once

    ctx.machine.spawn(pwriter, name="pwrite")
    ctx.machine.spawn(storer, name="store")
    f.end_checks()


def _truncate_store(ctx: RunContext, p: Params) -> None:
    # Over a host file: the race is truncate's (size, ftruncate) against
    # writepage's (size, pwrite) on the host (HostInode.host_lock).
    f = ShadowFile(ctx, 2, host=True)
    proc = ctx.machine.process()
    base = f.map(proc, 2, PROT_READ | PROT_WRITE, MAP_SHARED)

    f.load(proc, base + PGSIZE)  # page 1 mapped before the race

    def user() -> None:
        f.store(proc, base)  # page 0 survives the truncate
        with contextlib.suppress(BusError):  # page 1 may be gone: a bus error
            f.store(proc, base + PGSIZE)
        f.file.fsync()  # writepage's (size, pwrite) against truncate's (size, ftruncate)
        with contextlib.suppress(BusError):  # page 1 may be gone: a bus error
            f.load(proc, base + PGSIZE + SLOT)
        f.load(proc, base)

    def truncater() -> None:
        f.truncate(PGSIZE)

    ctx.machine.spawn(user, name="user")
    ctx.machine.spawn(truncater, name="truncate")
    f.end_checks()


def _flusher_pwrite(ctx: RunContext, p: Params) -> None:
    # The flusher's two tasks run beside a writer: writeback ages dirty pages
    # and writes those dirty for a period, kswapd reclaims once frames run low
    # (the scenario's machine has few).  Whatever either does to a page the
    # writer is rewriting, read() sees the latest write and nothing is lost.
    pages = p["pages"]
    f = ShadowFile(ctx, pages)
    ctx.machine.start_flusher(period=0.001)

    nap = ctx.machine.executor.semaphore(0, "writer.nap")

    def writer() -> None:
        for _ in range(p["rounds"]):
            for i in range(pages):
                f.pwrite(i * PGSIZE)  # pread checks each one
            nap.down_timeout(0.0015)  # a period passes: the flusher's tasks wake

    ctx.machine.spawn(writer, name="writer")
    f.end_checks()


def _flusher_writers(ctx: RunContext, p: Params) -> None:
    # kswapd and the writeback task against two writers, each rewriting its
    # own page of one file with pwrite and napping a period between rounds:
    # the machine has a frame for each page and none to spare, so kswapd
    # (under its low watermark) evicts the page the other writer is about to
    # write, while writeback writes the pages both dirtied and the writers
    # reclaim directly when kswapd has not.  read() sees each writer's latest
    # write, nothing is lost.
    f = ShadowFile(ctx, 2)
    ctx.machine.start_flusher(period=0.001)
    nap = ctx.machine.executor.semaphore(0, "writers.nap")

    def writer(index: int) -> None:
        for _ in range(p["rounds"]):
            f.pwrite(index * PGSIZE + index * SLOT)  # pread checks it
            nap.down_timeout(0.0015)  # a period passes: the flusher's tasks wake

    ctx.machine.spawn(writer, 0, name="writer-0")
    ctx.machine.spawn(writer, 1, name="writer-1")
    f.end_checks()


def _extend_fsync(ctx: RunContext, p: Params) -> None:
    # pwrite past the end of the file, twice (the second leaving a gap),
    # while fsync and then removal write the file back.  A write grows the
    # size before it sets PG_DIRTY, and writepage writes only below the size
    # it reads: a writeback between the two must still leave the page dirty
    # or write the new bytes.  Once fsync returns, every write that returned
    # before fsync began is in the backing store; at the end nothing is lost
    # and the host file is no longer than the file.  Over a host file: the
    # in-memory file's writepage (check/memdisk.py) cannot write past the end
    # of its bytearray, which only its set_size grows.
    f = ShadowFile(ctx, 1, host=True)
    returned: list[int] = []  # offsets whose pwrite has returned

    def writer() -> None:
        for offset in (PGSIZE, 2 * PGSIZE + SLOT):  # each past the end as it is written
            f.pwrite(offset)
            returned.append(offset)

    def syncer() -> None:
        before = list(returned)
        f.file.fsync()
        for offset in before:
            want = f.shadow.expect(offset, SLOT)
            got = f.backing(offset // PGSIZE)[offset % PGSIZE : offset % PGSIZE + SLOT]
            if got != want:
                ctx.fail(
                    DURABILITY,
                    f"fsync returned, yet the file holds {describe(got)} at offset {offset}, "
                    f"written past the old end by a pwrite that returned before fsync began "
                    f"({describe(want)})",
                )
        f.pm.remove_contig(0, 3)

    ctx.machine.spawn(writer, name="extend")
    ctx.machine.spawn(syncer, name="fsync-remove")
    f.end_checks()


def _blockdev_remove(ctx: RunContext, p: Params) -> None:
    blk = p["blk_size"]
    data = initial_bytes(1)
    path = os.path.join(ctx.scratch(), "disk")
    with open(path, "wb") as img:
        img.write(data)
    dev = ctx.machine.blockdev(path, sector_size=512)
    ctx.cleanup(dev.io.close)
    shadow = bytearray(data)

    def buffer_writer(blk_num: int) -> None:
        bh = dev.get_buffer(blk_num, blk)
        ctx.hold(bh.page, dev.mapping, bh.page.index)
        off = blk_num * blk
        if bytes(bh.data[:SLOT]) != bytes(shadow[off : off + SLOT]):
            ctx.fail(
                COHERENCE,
                f"block {blk_num} read {bytes(bh.data[:SLOT]).hex()}, "
                f"not {bytes(shadow[off : off + SLOT]).hex()}",
            )
        new = (int.from_bytes(bh.data[:SLOT], "little") + 1).to_bytes(SLOT, "little")
        ctx.sched.touch(bh.page.ppn, WRITE)
        bh.data[:SLOT] = new
        shadow[off : off + SLOT] = new
        dev.dirty_buffer(bh)
        ctx.drop(bh.page)
        dev.put_buffer(bh)

    def remover() -> None:
        dev.mapping.remove_contig(0, 1)

    buffer_writer(1)  # dirty before the race: its page holds two buffers' worth
    ctx.machine.spawn(buffer_writer, 0, name="buffer")
    ctx.machine.spawn(remover, name="remover")

    def image(index: int) -> bytes:
        with open(path, "rb") as img:
            img.seek(index * PGSIZE)
            got = img.read(PGSIZE)
        return got + bytes(PGSIZE - len(got))

    def written(index: int) -> bytes:
        got = bytes(shadow[index * PGSIZE : (index + 1) * PGSIZE])
        return got + bytes(PGSIZE - len(got))

    ctx.at_end(lambda: quiescent(ctx.machine))
    ctx.at_end(lambda: no_leak(ctx.machine))
    ctx.at_end(lambda: nothing_lost("the image", dev.mapping, 1, image, written))


SCENARIOS = (
    Scenario(
        "flusher-pwrite",
        "the flusher's writeback and kswapd run beside a writer: nothing lost, reads see writes",
        _flusher_pwrite,
        {"pages": 2, "rounds": 2},
        frames=lambda p: p["pages"] + 3,
        limits={"pages": (1, 4), "rounds": (1, 4)},
    ),
    Scenario(
        "eio-fsync",
        "a host file's write fails once while two fsyncs race a store: EIO, nothing lost",
        _eio_fsync,
    ),
    Scenario(
        "pwrite-remove",
        "pwrite races removal of a page dirty through a mapping; read() sees both",
        _pwrite_remove,
        {"rounds": 2},
        limits={"rounds": (1, 8)},
    ),
    Scenario(
        "read-run-remove",
        "one pread takes two cached pages as a run while a pwrite and a remover race it",
        _read_run_remove,
        {"rounds": 1},
        cores=3,
        limits={"rounds": (1, 4)},
    ),
    Scenario(
        "pwrite-store",
        "pwrite and a store through a shared mapping race on one page",
        _pwrite_store,
    ),
    Scenario(
        "truncate-store",
        "truncate cuts a host file while stores, an fsync and loads race it",
        _truncate_store,
    ),
    Scenario(
        "blockdev-remove",
        "a buffer head is dirtied while its page (with another dirty buffer) is removed",
        _blockdev_remove,
        {"blk_size": 512},
        limits={"blk_size": (512, 2048)},
        valid=lambda p: (
            ""
            if p["blk_size"] & (p["blk_size"] - 1) == 0
            else f"blk_size must be a power of two, not {p['blk_size']}"
        ),
    ),
    Scenario(
        "eio-read",
        "a host file's read fails while a pread and a fault race to read its page: EIO, "
        "then the bytes",
        _eio_read,
    ),
    Scenario(
        "eio-sync",
        "a host file's fsync(2) fails while two fsyncs race a store: one EIO, nothing lost",
        _eio_sync,
    ),
    Scenario(
        "flusher-writers",
        "kswapd and the writeback task run beside two writers of one file: nothing lost",
        _flusher_writers,
        {"rounds": 1},
        cores=3,
        frames=3,
        limits={"rounds": (1, 3)},
    ),
    Scenario(
        "extend-fsync",
        "pwrites past the end of the file race fsync and removal: what fsync returns after "
        "is durable",
        _extend_fsync,
    ),
    Scenario(
        "eio-truncate",
        "a host file's truncate fails while a store, a pread and an fsync of the page it "
        "would cut race it: EIO, the file whole",
        _eio_truncate,
    ),
)

# Scenarios that fail on today's kernel, kept out of the registry (and so out
# of `pagemap check`) until the kernel is fixed; each with what it finds.
PENDING: tuple[tuple[Scenario, str], ...] = ()
