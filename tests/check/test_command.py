"""`pagemap check` and `pagemap replay` on the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from pagemap.cli import main
from tests.mutants import MUTANTS


def test_check_passes_and_summarises(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["check", "load-remove", "eio-load", "--strategy", "random", "--budget", "30"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "load-remove" in out and "eio-load" in out and "holds" in out


def test_check_dfs_reports_exhaustion(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "load-remove"]) == 0
    out = capsys.readouterr().out
    assert "yes" in out  # exhaustive


def test_check_with_worker_processes(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["check", "load-remove", "--strategy", "pct", "--budget", "40", "--jobs", "2"])
    assert rc == 0
    assert "40" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, says",
    [
        (["check", "no-such-scenario"], "unknown scenario"),
        (["check", "--budget", "0"], "--budget"),
        (["check", "--strategy", "bfs"], "--strategy"),
        (["check", "--budget", "5", "--time", "1"], "not both"),
        (["check", "load-race", "-p", "bogus=1"], "no parameter"),
        (["check", "-p", "loaders"], "NAME=INTEGER"),
        (["replay", "/no/such/trace.json"], "trace.json"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        raise SystemExit(main(argv))
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert says in err
    assert len(err.splitlines()) == 1


def test_violation_writes_a_trace_that_replays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mutant = next(m for m in MUTANTS if m.name == "lookup-keeps-removal")
    traces = tmp_path / "traces"
    with mutant.applied():
        rc = main(["check", mutant.scenario, "--traces", str(traces)])
        out = capsys.readouterr().out
        assert rc == 1
        (path,) = traces.glob("*.json")
        assert str(path) in out
        assert main(["replay", str(path)]) == 1
        table = capsys.readouterr().out
    for column in ("step", "core", "operation", "decoded (slot: ref|R|ppn)", "source"):
        assert column in table
    assert "VIOLATION" in table and "remover" in table
    # Replayed against the real kernel, the schedule no longer fails.
    assert main(["replay", str(path)]) == 0
    assert "no violation on replay" in capsys.readouterr().out


def test_list_names_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--list"]) == 0
    out = capsys.readouterr().out
    assert "two-removers" in out and "eio-load" in out


def test_check_with_a_time_limit(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "refcount", "--strategy", "random", "--time", "0.3"]) == 0
    assert "refcount" in capsys.readouterr().out
