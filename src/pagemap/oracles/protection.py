"""Protection: no access lands through a mapping after a call that forbids it
returned.

Once `mprotect` to read-only (or PROT_NONE) or `munmap` of a range returns,
no store may land there through the process's old translations, and after
PROT_NONE or munmap no load either: the call must have flushed every TLB
entry that allowed it before it returned (Linux's contract, and what
3ea277194daa and CVE-2018-18281 broke).  A store that lands a moment later
through a stale entry that another core still holds is the violation this
oracle reports; the other oracles may see nothing wrong (the page is still
the file's and dirty, so nothing is lost and no free frame is touched).

Fed by whoever makes the calls, never by the kernel it judges:

- `forbid(pid, lo, hi, prot)` as a call that took access away returns
  (mprotect with `prot`; munmap, or the old range of a moving mremap, with
  PROT_NONE);
- `allow(pid, lo, hi)` as a call that may give access back begins (mmap,
  mprotect, the new range of mremap): from then on an access there may be
  legitimate;
- `landed(what, pid, va, write)` from the machine's access hook, just before
  an access's bytes land (no scheduling point in between), so "after the call
  returned" is exact.

Rules: a process's forbidden ranges change only in the task that makes its
calls and are replaced whole, so an access reads them without a lock; no
module-level state (one object per schedule).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pagemap.hw.memory import PGMASK
from pagemap.kernel.mman import PROT_WRITE
from pagemap.kernel.vmr import describe_prot, prot_allows

PROTECTION = "protection"

# fail(oracle, message): the checker's never returns.
Fail = Callable[[str, str], None]


@dataclass(frozen=True)
class Forbidden:
    """[lo, hi) of a process, where `prot` is all an access may have had since
    `call` returned."""

    lo: int
    hi: int
    prot: int
    call: str


class Protection:
    """The protection oracle of one schedule."""

    def __init__(self, fail: Fail) -> None:
        self.fail = fail
        self._forbidden: dict[int, tuple[Forbidden, ...]] = {}

    def forbid(self, pid: int, lo: int, hi: int, prot: int, call: str) -> None:
        """`call` on [lo, hi) returned: accesses beyond `prot` must fault."""
        hi = (hi + PGMASK) & ~PGMASK
        kept = self._without(pid, lo, hi)
        if prot & PROT_WRITE:
            self._forbidden[pid] = kept  # nothing taken away
            return
        self._forbidden[pid] = (*kept, Forbidden(lo, hi, prot, call))

    def allow(self, pid: int, lo: int, hi: int) -> None:
        """A call that may give [lo, hi) access back begins."""
        self._forbidden[pid] = self._without(pid, lo, (hi + PGMASK) & ~PGMASK)

    def landed(self, what: str, pid: int, va: int, write: bool) -> None:
        """An access of process `pid` at `va` is about to land."""
        for f in self._forbidden.get(pid, ()):
            if f.lo <= va < f.hi and not prot_allows(f.prot, write):
                self.fail(
                    PROTECTION,
                    f"{what} landed after {f.call} of {f.lo:#x}-{f.hi:#x} returned, which left "
                    f"it {describe_prot(f.prot)}: a TLB entry that allowed it outlived the call",
                )
                return

    def _without(self, pid: int, lo: int, hi: int) -> tuple[Forbidden, ...]:
        """The process's ranges with [lo, hi) cut out of them."""
        out: list[Forbidden] = []
        for f in self._forbidden.get(pid, ()):
            if f.hi <= lo or f.lo >= hi:
                out.append(f)
                continue
            if f.lo < lo:
                out.append(Forbidden(f.lo, lo, f.prot, f.call))
            if f.hi > hi:
                out.append(Forbidden(hi, f.hi, f.prot, f.call))
        return tuple(out)


__all__ = ["PROTECTION", "Forbidden", "Protection"]
