"""Durability when msync and fsync return, not only at the end.

The end-of-run oracle (durability.py) asks whether anything written is lost
once every task is done; by then a later writeback may have covered for a
sync call that returned too early.  This one is asked the moment a
successful `msync` or `fsync` returns: every slot whose latest store had
landed when the call began must be in the backing store now, as that store
wrote it or as a later store to the slot wrote it (another task may store to
the slot while the call runs, and the call may write that too).  Scenarios
stamp every slot with (page, slot, version) (coherence.py), so "later" is a
larger version of the same slot.

A slot the call began with past the end of the file, or that a truncate cut
meanwhile, is not judged: `cut` is the size the file had at any moment of
the call, its smallest.
"""

from __future__ import annotations

from pagemap.oracles import DURABILITY, Violation
from pagemap.oracles.coherence import SLOT, describe


def _stamp_of(data: bytes) -> tuple[int, int] | None:
    """(page and slot, version) of a stamp, or None for bytes that are not one."""
    v = int.from_bytes(data, "little")
    if len(data) != SLOT or not v >> 63:
        return None
    return v & 0x1FFFFFF, (v >> 32) & 0xFFFFFF


def _covers(stored: bytes, before: bytes) -> bool:
    """`stored` is the store `before` names, or a later store to its slot."""
    if stored == before:
        return True
    got, want = _stamp_of(stored), _stamp_of(before)
    return got is not None and want is not None and got[0] == want[0] and got[1] >= want[1]


def synced(
    call: str, name: str, offset: int, before: bytes, stored: bytes, cut: int
) -> Violation | None:
    """The violation, if `call` returned while the backing store of `name`
    at file `offset` (`stored`, read as it returned) lacks a store it began
    with (`before`, what the file held there then); slots at or past `cut`
    are passed over."""
    for at in range(0, min(len(before), len(stored)), SLOT):
        if offset + at + SLOT > cut:
            break
        if not _covers(stored[at : at + SLOT], before[at : at + SLOT]):
            return Violation(
                DURABILITY,
                f"{call} returned, but {name} holds {describe(stored[at : at + SLOT])} at "
                f"offset {offset + at} in its backing store, not "
                f"{describe(before[at : at + SLOT])}, stored before the call began",
            )
    return None


__all__ = ["synced"]
