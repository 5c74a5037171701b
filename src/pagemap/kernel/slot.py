"""The page map's slot word: what a radix-tree slot holds for one page.

Rules: these are pure functions of a 64-bit value; they touch no memory and
take no lock.  The caller reads a slot with one atomic load and writes it back
with one compare-and-swap, so whatever these compute from the old value is
installed whole or not at all.

    bit 63      53  52  51                      0
       | refcnt:11 | R |        ppn:52          |

ppn is the page's frame (0 means no page: frame 0 is never handed out), R is
REMOVAL (a remover marked the page), refcnt counts the tasks using the page
right now.  The layout is the seed's, bit for bit.
"""

from __future__ import annotations

from typing import NamedTuple

from pagemap.kernel.errors import InvalidArgument, KernelBug, RefcountOverflow

PM_FLAGS_SHIFT = 52
PM_REFCNT_SHIFT = PM_FLAGS_SHIFT + 1
PM_REMOVAL = 1 << PM_FLAGS_SHIFT
PM_PPN_MASK = (1 << PM_FLAGS_SHIFT) - 1
PM_REFCNT_ONE = 1 << PM_REFCNT_SHIFT
PM_REFCNT_MAX = (1 << (64 - PM_REFCNT_SHIFT)) - 1  # 2047 tasks at once
# Precomputed for the helpers below, which are on the page cache's hit path.
_NOT_REMOVAL = ~PM_REMOVAL
_REFCNT_FULL = PM_REFCNT_MAX << PM_REFCNT_SHIFT  # any word at or above has a full count


def slot_check_removal(slot_val: int) -> bool:
    return bool(slot_val & PM_REMOVAL)


def slot_set_removal(slot_val: int) -> int:
    return slot_val | PM_REMOVAL


def slot_clear_removal(slot_val: int) -> int:
    return slot_val & _NOT_REMOVAL


def slot_check_refcnt(slot_val: int) -> int:
    return slot_val >> PM_REFCNT_SHIFT


def slot_inc_refcnt(slot_val: int) -> int:
    """One more user.  The seed let the 11-bit count wrap into nothing; we refuse."""
    if slot_val >= _REFCNT_FULL:
        raise RefcountOverflow(
            f"page map slot already has {PM_REFCNT_MAX} references, the most its "
            f"{64 - PM_REFCNT_SHIFT}-bit count can hold; a further reference would wrap to 0"
        )
    return slot_val + PM_REFCNT_ONE


def slot_dec_refcnt(slot_val: int) -> int:
    """One user fewer; KernelBug if there was none (a put without a get)."""
    if not slot_val >> PM_REFCNT_SHIFT:
        raise KernelBug("page map slot has no reference to drop (a put without a get)")
    return slot_val - PM_REFCNT_ONE


def slot_get_ppn(slot_val: int) -> int:
    """The ppn in the slot; 0 means no page (frame 0 is never allocated)."""
    return slot_val & PM_PPN_MASK


def slot_set_ppn(slot_val: int, ppn: int) -> int:
    """Put `ppn` (0 for "no page") in the slot, keeping REMOVAL and refcount.

    The seed computed page2ppn(NULL) when clearing a slot, which is garbage;
    here "no page" is simply ppn 0.
    """
    if not 0 <= ppn <= PM_PPN_MASK:
        raise InvalidArgument(f"ppn {ppn} does not fit the slot's {PM_FLAGS_SHIFT} bits")
    return ppn | (slot_val & ~PM_PPN_MASK)


class SlotWord(NamedTuple):
    refcnt: int
    removal: bool
    ppn: int

    def __str__(self) -> str:
        return f"{self.refcnt}|{'R' if self.removal else '-'}|{self.ppn}"


def encode_slot(ppn: int, removal: bool = False, refcnt: int = 0) -> int:
    if not 0 <= refcnt <= PM_REFCNT_MAX:
        raise InvalidArgument(f"slot refcount {refcnt} is outside 0..{PM_REFCNT_MAX}")
    return slot_set_ppn((refcnt << PM_REFCNT_SHIFT) | (PM_REMOVAL if removal else 0), ppn)


def decode_slot(slot_val: int) -> SlotWord:
    return SlotWord(
        slot_check_refcnt(slot_val), slot_check_removal(slot_val), slot_get_ppn(slot_val)
    )


__all__ = [
    "PM_FLAGS_SHIFT",
    "PM_PPN_MASK",
    "PM_REFCNT_MAX",
    "PM_REFCNT_ONE",
    "PM_REFCNT_SHIFT",
    "PM_REMOVAL",
    "SlotWord",
    "decode_slot",
    "encode_slot",
    "slot_check_refcnt",
    "slot_check_removal",
    "slot_clear_removal",
    "slot_dec_refcnt",
    "slot_get_ppn",
    "slot_inc_refcnt",
    "slot_set_ppn",
    "slot_set_removal",
]
