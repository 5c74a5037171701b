"""File and block-device scenarios: pwrite, truncate and buffer heads racing removal."""

from __future__ import annotations

import contextlib

from pagemap.check.oracle import COHERENCE, DURABILITY, RunContext, Violation
from pagemap.check.scenario import Params, Scenario, drained, quiescent
from pagemap.check.shadow import SLOT, ShadowFile, initial_bytes, scratch_file
from pagemap.hw.memory import PGSIZE
from pagemap.kernel.errors import BusError
from pagemap.kernel.mman import MAP_SHARED, PROT_READ, PROT_WRITE


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
    f = ShadowFile(ctx, 2)
    proc = ctx.machine.process()
    base = f.map(proc, 2, PROT_READ | PROT_WRITE, MAP_SHARED)

    f.load(proc, base + PGSIZE)  # page 1 mapped before the race

    def user() -> None:
        f.store(proc, base)  # page 0 survives the truncate
        with contextlib.suppress(BusError):  # page 1 may be gone: a bus error
            f.load(proc, base + PGSIZE + SLOT)
        f.load(proc, base)

    def truncater() -> None:
        f.file.truncate(PGSIZE)
        del f.shadow[PGSIZE:]

    ctx.machine.spawn(user, name="user")
    ctx.machine.spawn(truncater, name="truncate")
    f.end_checks()


def _blockdev_remove(ctx: RunContext, p: Params) -> None:
    blk = p["blk_size"]
    data = initial_bytes(1)
    path, remove = scratch_file("disk", data)
    ctx.cleanup(remove)
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

    def written_back() -> list[Violation]:
        with open(path, "rb") as img:
            on_disk = img.read()
        if on_disk != bytes(shadow):
            off = next(
                i
                for i in range(0, len(shadow), SLOT)
                if on_disk[i : i + SLOT] != shadow[i : i + SLOT]
            )
            return [
                Violation(
                    DURABILITY,
                    f"the image holds {on_disk[off : off + SLOT].hex()} at {off}, "
                    f"but {shadow[off : off + SLOT].hex()} was written",
                )
            ]
        return []

    ctx.at_end(lambda: quiescent(ctx))
    ctx.at_end(lambda: drained(ctx))
    ctx.at_end(written_back)


SCENARIOS = (
    Scenario(
        "pwrite-remove",
        "pwrite races removal of a page dirty through a mapping; read() sees both",
        _pwrite_remove,
        {"rounds": 2},
    ),
    Scenario(
        "pwrite-store",
        "pwrite and a store through a shared mapping race on one page",
        _pwrite_store,
    ),
    Scenario(
        "truncate-store",
        "truncate cuts a mapped file while a store and loads race it",
        _truncate_store,
    ),
    Scenario(
        "blockdev-remove",
        "a buffer head is dirtied while its page (with another dirty buffer) is removed",
        _blockdev_remove,
        {"blk_size": 512},
    ),
)
