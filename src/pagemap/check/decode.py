"""How a footprint object reads in a step's row and in the machine's state.

Rules: pure reads of an object's current value, no scheduling point.  A slot word
(named "....slot[i]", or the frame table's "pm.slot") decodes as refcount|R|ppn, a
PTE (a name with "pte") as ppn=N:P|W|U|A|D, page flags (".flags", or the frame
table's "page.flags") by name (UPTODATE|DIRTY): the declared bit fields; any
other word in decimal, as a model's counter means it; a spinlock
says who holds it, a semaphore or a lock table's lock its count.  A word of a
per-frame array is named by its footprint key, (array name, frame), and read
through `keyed` (the SimExecutor's tables by name; sync/arrays.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from pagemap.hw.mmu import pte_bits
from pagemap.kernel.page import flag_names
from pagemap.kernel.slot import decode_slot
from pagemap.sync.arrays import AtomicArray, LockTable
from pagemap.sync.atomic import AtomicWord
from pagemap.sync.locks import Semaphore, SpinLock


class Shown(NamedTuple):
    """How a footprint object reads now, in a row's columns."""

    slot: str = ""
    flags: str = ""
    pte: str = ""
    value: str = ""


def show_value(name: str, v: int) -> Shown:
    """The columns for a word called `name` that holds `v`."""
    if ".slot[" in name or name.startswith("pm.slot"):
        return Shown(slot=str(decode_slot(v)))
    if "pte" in name.lower():
        return Shown(pte=pte_bits(v))
    if name.endswith(".flags") or name.startswith("page.flags"):
        return Shown(flags=flag_names(v))
    return Shown(value=str(v))  # a count or a value: decimal, as the model means it


def show_word(word: AtomicWord) -> Shown:
    return show_value(word.name, word.value)


def keyed_table(obj: object, keyed: Mapping[str, object] | None) -> object | None:
    """The array or lock table a footprint key (name, i) names, or None."""
    if keyed is None or type(obj) is not tuple or len(obj) != 2:
        return None
    return keyed.get(obj[0]) if isinstance(obj[0], str) else None


def show(obj: object, keyed: Mapping[str, object] | None = None) -> Shown:
    """The columns for any footprint object, as it is now."""
    if isinstance(obj, AtomicWord):
        return show_word(obj)
    table = keyed_table(obj, keyed)
    if table is not None:
        assert isinstance(obj, tuple)
        if isinstance(table, AtomicArray):
            return show_value(table.name, table.value(obj[1]))
        if isinstance(table, LockTable):
            return Shown(value=f"count {table.count(obj[1])}")
        return Shown()
    if isinstance(obj, SpinLock):
        holder = getattr(obj, "holder", None)
        who = getattr(holder, "name", "?")
        return Shown(value=f"held by {who}" if obj.held else "free")
    if isinstance(obj, Semaphore):
        return Shown(value=f"count {obj.count}")
    return Shown()


def name_of(obj: object, keyed: Mapping[str, object] | None = None) -> str:
    """A footprint object in words: its name, "frame 7", a word of a per-frame
    array such as "page[7].flags" or "pm.slot[7]", or a key such as "file
    data.bin page 0"."""
    if obj is None:
        return ""
    if isinstance(obj, int):
        return f"frame {obj}"  # a footprint int names a frame by its ppn
    if keyed_table(obj, keyed) is not None:
        assert isinstance(obj, tuple)
        table, i = obj
        if table.startswith("page."):  # a field of struct page: "page[7].flags"
            return f"page[{i}].{table[5:]}"
        return f"{table}[{i}]"  # "pm.slot[7]"
    if isinstance(obj, tuple):
        # A key such as ("file", "file", 0): said once where two parts repeat.
        parts = [str(p) for p in obj]
        return " ".join(p for i, p in enumerate(parts) if i == 0 or p != parts[i - 1])
    ppn = getattr(obj, "ppn", None)
    if isinstance(ppn, int):
        return f"page[{ppn}]"
    name = getattr(obj, "name", None)
    return name if isinstance(name, str) else type(obj).__name__


__all__ = ["Shown", "keyed_table", "name_of", "show", "show_value", "show_word"]
