"""Page-table entry bits, as on x86-64.

A PTE is a 64-bit word: the frame number shifted left by PGSHIFT, plus these
bits.  The MMU sets A and D on its own, concurrently with the kernel, which is
why the kernel changes a PTE only with single atomic operations.
"""

from __future__ import annotations

from pagemap.hw.memory import PGSHIFT

PTE_P = 0x001  # present
PTE_W = 0x002  # writable
PTE_U = 0x004  # user-accessible
PTE_A = 0x020  # accessed (set by the MMU)
PTE_D = 0x040  # dirty (set by the MMU on a store)

PTE_FLAGS_MASK = (1 << PGSHIFT) - 1


def pte_ppn(pte: int) -> int:
    """The frame number a PTE names (PTE2PPN)."""
    return pte >> PGSHIFT


def make_pte(ppn: int, bits: int) -> int:
    return (ppn << PGSHIFT) | bits


def pte_bits(pte: int) -> str:
    """ "P|W|U|A|D" style summary; "0" for an empty PTE."""
    if pte == 0:
        return "0"
    names = [
        n
        for bit, n in ((PTE_P, "P"), (PTE_W, "W"), (PTE_U, "U"), (PTE_A, "A"), (PTE_D, "D"))
        if pte & bit
    ]
    return f"ppn={pte_ppn(pte)}:{'|'.join(names) or '-'}"
