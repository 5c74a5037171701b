"""How a footprint object reads in a step's row and in the machine's state.

Rules: pure reads of an object's current value, no scheduling point.  A slot word
(named "....slot[i]") decodes as refcount|R|ppn, a PTE (a name with "pte") as
ppn=N:P|W|U|A|D, page flags (".flags") by name (UPTODATE|DIRTY), any other word in
hex; a spinlock says who holds it, a semaphore its count.
"""

from __future__ import annotations

from typing import NamedTuple

from pagemap.hw.mmu import pte_bits
from pagemap.kernel.page import flag_names
from pagemap.kernel.slot import decode_slot
from pagemap.sync.atomic import AtomicWord
from pagemap.sync.locks import Semaphore, SpinLock


class Shown(NamedTuple):
    """How a footprint object reads now, in a row's columns."""

    slot: str = ""
    flags: str = ""
    pte: str = ""
    value: str = ""


def show_word(word: AtomicWord) -> Shown:
    v = word.value
    name = word.name
    if ".slot[" in name:
        return Shown(slot=str(decode_slot(v)))
    if "pte" in name.lower():
        return Shown(pte=pte_bits(v))
    if name.endswith(".flags"):
        return Shown(flags=flag_names(v))
    return Shown(value=f"{v:#x}")


def show(obj: object) -> Shown:
    """The columns for any footprint object, as it is now."""
    if isinstance(obj, AtomicWord):
        return show_word(obj)
    if isinstance(obj, SpinLock):
        holder = getattr(obj, "holder", None)
        who = getattr(holder, "name", "?")
        return Shown(value=f"held by {who}" if obj.held else "free")
    if isinstance(obj, Semaphore):
        return Shown(value=f"count {obj.count}")
    return Shown()


def name_of(obj: object) -> str:
    """A footprint object in words: its name, "frame 7", or a key such as
    "file data.bin page 0"."""
    if obj is None:
        return ""
    if isinstance(obj, int):
        return f"frame {obj}"  # a footprint int names a frame by its ppn
    if isinstance(obj, tuple):
        # A key such as ("file", "file", 0): said once where two parts repeat.
        parts = [str(p) for p in obj]
        return " ".join(p for i, p in enumerate(parts) if i == 0 or p != parts[i - 1])
    ppn = getattr(obj, "ppn", None)
    if isinstance(ppn, int):
        return f"page[{ppn}]"
    name = getattr(obj, "name", None)
    return name if isinstance(name, str) else type(obj).__name__


__all__ = ["Shown", "name_of", "show", "show_word"]
