"""Mutants of the writeback-error record (kernel/errseq.py)."""

from __future__ import annotations

from pagemap.check.mutants.base import Mutant
from pagemap.kernel.errseq import WritebackErrors


def _sample_hides_unseen(self: WritebackErrors, file: object) -> int:
    # BUG: Linux 4.13's errseq_sample: the word as it is, seen or not, so a
    # file opened after an error nobody has seen never hears of it
    # (b4678df184b3 fixed it in 4.17).
    old = self.word.load()
    if self.on_sample is not None:
        self.on_sample(file)
    return old


ERRSEQ_MUTANTS = (
    Mutant(
        "errseq-sample-hides-unseen",
        "a file opened after a writeback error nobody has seen samples it as seen",
        "errseq-open",
        {"sample": _sample_hides_unseen},
        budget=2000,
        target=WritebackErrors,
    ),
)
