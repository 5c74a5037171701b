"""`pagemap check --mutant NAME`: a mutant's counterexample, one command away.

Without --mutants, --mutant runs the check on the kernel with that one
mutant applied (its own scenario when none is named) and writes the
counterexample; the trace names the mutant, and `pagemap replay` applies it
again, so the counterexample replays as it was found.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pagemap.check.mutants import lookup_mutant
from pagemap.cli import main

MUTANT = "dirty-cleared-late"


def test_the_counterexample_is_written_and_replays_under_the_mutant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--mutant", MUTANT, "--traces", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert f"under the mutant {MUTANT}: {lookup_mutant(MUTANT).broken}" in out.err + out.out
    (trace,) = tmp_path.glob("*.json")
    doc = json.loads(trace.read_text())
    assert doc["model"] == {"scenario": lookup_mutant(MUTANT).scenario, "mutant": MUTANT}
    assert main(["replay", str(trace)]) == 1  # the violation reproduces
    # The same schedule on the kernel as it is holds: the mutant made the difference.
    del doc["model"]["mutant"]
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(doc))
    assert main(["replay", str(plain)]) in (0, 3)  # holds, or no longer fits
    capsys.readouterr()


def test_the_kernel_is_itself_again_after_the_command(tmp_path: Path) -> None:
    assert main(["check", "--mutant", MUTANT, "--traces", str(tmp_path)]) == 1
    assert main(["check", lookup_mutant(MUTANT).scenario, "--strategy", "dfs"]) == 0


@pytest.mark.parametrize(
    "argv, said",
    [
        (["--mutant", "nope"], "unknown mutant 'nope'"),
        (["--mutant", MUTANT, "--mutant", "no-shootdown"], "runs one mutant: name one"),
        (["--mutant", MUTANT, "--coverage"], "no --coverage"),
    ],
)
def test_bad_requests_are_one_line_and_exit_2(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and said in err
