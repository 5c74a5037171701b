"""Private isolation: what a process writes into its private mappings stays
its own.

A byte stored through a MAP_PRIVATE mapping, or written into one by the
kernel for another process (a forced write: /proc/pid/mem, ptrace), lands in
that process's private copy; it must never appear in the file's page cache
or its backing store.  A file nobody may write (opened read-only, or simply
never written by the scenario) must read, cached and backed, as it began.
And a process's private copy is its own: what another process writes after
fork never shows through it (`own_bytes`).

Fed by the scenario: `secret(data)` for each value it stores or forces into
a private mapping (values no one writes through the file, so seeing one in
the file is proof of a leak), and asked `check()` at any quiescent moment
(and at the end).  Rules: `check` reads the page cache through
cached_page_bytes, at quiescence or in the task that owns the question,
never racing a kernel step; it returns violations, it reports nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from pagemap.kernel.pagemap import PageMap
from pagemap.oracles import Violation
from pagemap.oracles.durability import cached_page_bytes

PRIVATE_ISOLATION = "private isolation"


class PrivateIsolation:
    """The file `name` (its page map `pm`, `pages` pages, its backing store
    read by `backing(index)`) against what was written privately over it."""

    def __init__(
        self,
        name: str,
        pm: PageMap,
        pages: int,
        backing: Callable[[int], bytes],
        frozen: Callable[[int], bytes] | None = None,
    ) -> None:
        self.name = name
        self.pm = pm
        self.pages = pages
        self.backing = backing
        # Page index -> its bytes, for a file no one may change; None: any.
        self.frozen = frozen
        self.secrets: list[bytes] = []

    def secret(self, data: bytes) -> None:
        """`data` was stored into a private mapping of this file (or is about
        to be): it must never reach the file."""
        self.secrets.append(bytes(data))

    def check(self) -> list[Violation]:
        """Every way the file can be read, cached and backed, against the
        secrets and the frozen contents."""
        problems: list[Violation] = []
        for index in range(self.pages):
            cached = cached_page_bytes(self.pm, index)
            views = [("its backing store", self.backing(index))]
            if cached is not None:
                views.append(("the page cache", cached[0]))
            for where, data in views:
                problem = self._judge(index, where, data)
                if problem is not None:
                    problems.append(Violation(PRIVATE_ISOLATION, problem))
        return problems

    def _judge(self, index: int, where: str, data: bytes) -> str | None:
        for secret in self.secrets:
            at = data.find(secret)
            if at >= 0:
                return (
                    f"{where} of {self.name} holds {secret.hex()} at offset "
                    f"{index * len(data) + at}, stored only through a private mapping"
                )
        want = self.frozen(index) if self.frozen is not None else data
        if data != want:
            at = next((i for i, (x, y) in enumerate(zip(data, want, strict=False)) if x != y), 0)
            return (
                f"{where} of {self.name}, which nobody may write, changed at offset "
                f"{index * len(data) + at}: {data[at : at + 8].hex()}"
            )
        return None


def own_bytes(who: str, va: int, got: bytes, allowed: tuple[bytes, ...]) -> Violation | None:
    """A process read `got` at `va` from its own private copy: it must be one
    of `allowed` (its own stores, or what the page held when it was shared),
    never a later write of another process."""
    if got in allowed:
        return None
    return Violation(
        PRIVATE_ISOLATION,
        f"{who} read {got.hex()} at {va:#x} from its private memory, which is none of "
        f"{', '.join(a.hex() for a in allowed)}: another process's write shows through",
    )


__all__ = ["PRIVATE_ISOLATION", "PrivateIsolation", "own_bytes"]
