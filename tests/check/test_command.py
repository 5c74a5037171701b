"""`pagemap check` and `pagemap replay` on the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pagemap.check.mutants import MUTANTS
from pagemap.cli import main


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


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--traces", "{file}"], "--traces {file}: {file} is not a directory"),
        (["--traces", "{file}/sub"], "is not a directory"),
        (["--report", "{file}"], "--report {file}: {file} is not a directory"),
    ],
)
def test_output_paths_are_checked_before_any_work(
    argv: list[str],
    says: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pagemap.check import command

    def explored(*args: object) -> None:
        raise AssertionError("the exploration started before its output paths were checked")

    monkeypatch.setattr(command, "run_serial", explored)
    monkeypatch.setattr(command, "explore", explored)
    afile = tmp_path / "afile"
    afile.write_text("")
    args = [a.format(file=afile) for a in argv]
    with pytest.raises(SystemExit) as info:
        raise SystemExit(main(["check", "load-remove", *args]))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says.format(file=afile) in err


def test_replay_html_path_is_checked_before_the_replay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pagemap.check import command

    def replayed(*args: object, **kw: object) -> None:
        raise AssertionError("replayed before --html was checked")

    monkeypatch.setattr(command, "replay", replayed)
    trace = tmp_path / "t.json"
    trace.write_text("{}")
    for html, says in (
        (tmp_path / "no" / "such" / "dir.html", "does not exist"),
        (tmp_path, "is a directory"),
    ):
        assert main(["replay", str(trace), "--html", str(html)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err


def test_check_says_what_it_explores_and_ends_with_a_verdict(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["check", "load-remove", "--strategy", "pct", "--budget", "10", "--traces"]
    assert main([*argv, str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("pagemap check: 1 scenario, PCT, 10 schedules each;")
    assert "in this process, seed 0" in lines[0]
    assert lines[-1].startswith("OK: every oracle holds: 10 schedules of 1 scenario in ")
    mutant = next(m for m in MUTANTS if m.name == "lookup-keeps-removal")
    with mutant.applied():
        assert main(["check", mutant.scenario, "--traces", str(tmp_path)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    (path,) = tmp_path.glob("*.json")
    assert lines[-1].startswith(f"FAILED: {json.loads(path.read_text())['oracle']} in ")
    assert lines[-1].endswith(f"replay it: pagemap replay {path}")
    # The counterexample reads as a timeline: a title in words, marks explained.
    out = "\n".join(lines)
    assert "write-remove, with pages=1, rounds=2 and readers=1: a counterexample" in out
    assert "✗ failing: the oracle's message is about this step" in out


def test_check_report_writes_a_page_per_counterexample(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    mutant = next(m for m in MUTANTS if m.name == "lookup-keeps-removal")
    report = tmp_path / "report" / "new"
    with mutant.applied():
        rc = main(["check", mutant.scenario, "--traces", str(tmp_path), "--report", str(report)])
    assert rc == 1
    (trace,) = tmp_path.glob("*.json")
    (page,) = report.glob("*.html")
    assert page.name == trace.stem + ".html"
    assert f"timeline page written to {page}" in capsys.readouterr().out
    html = page.read_text()
    assert html.startswith("<!doctype html>") and "http:" not in html and "https:" not in html
    assert f"pagemap replay {trace}" in html


def test_a_parameter_no_scenario_takes_is_refused_when_none_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo in -p must not run the default job with the parameter dropped."""
    from pagemap.check import command

    def explored(*args: object) -> None:
        raise AssertionError("the exploration started with a parameter no scenario takes")

    monkeypatch.setattr(command, "run_serial", explored)
    monkeypatch.setattr(command, "explore", explored)
    assert main(["check", "-p", "laoders=4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "'laoders'" in err and "loaders" in err.replace("'laoders'", "")
    assert "pages" in err and "truncate_to" in err  # the parameters there are, every one


@pytest.mark.parametrize("option", ["--traces", "--report"])
def test_a_directory_nothing_can_be_written_in_is_refused_before_any_work(
    option: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """/proc refuses every new file, even root's, whom its permission bits let in:
    the check makes something there, rather than read the bits."""
    from pagemap.check import command

    def explored(*args: object) -> None:
        raise AssertionError("the exploration started before its output paths were checked")

    monkeypatch.setattr(command, "run_serial", explored)
    monkeypatch.setattr(command, "explore", explored)
    assert main(["check", "load-remove", option, "/proc/x/y"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{option} /proc/x/y: nothing can be written in /proc" in err


def test_the_output_path_check_leaves_nothing_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "there").mkdir()
    argv = ["check", "load-remove", "--strategy", "pct", "--budget", "5"]
    assert main([*argv, "--traces", str(tmp_path / "new" / "deep")]) == 0
    assert main([*argv, "--traces", str(tmp_path / "there")]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["there"]


def test_mutants_run_in_jobs_worker_processes_with_the_table_of_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import subprocess

    argv = ["check", "--mutants", "--mutant", "pins-ignored", "--mutant", "no-shootdown"]
    assert main(argv) == 0
    serial = capsys.readouterr()
    started: list[list[str]] = []
    popen = subprocess.Popen

    def spy(args: list[str], **kw: Any) -> Any:
        started.append(args)
        return popen(args, **kw)

    monkeypatch.setattr(subprocess, "Popen", spy)
    assert main([*argv, "--jobs", "2"]) == 0
    parallel = capsys.readouterr()
    assert len(started) == 2

    def killers(out: str) -> list[tuple[str, str]]:
        cells = [[c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines()]
        return [(r[0], r[2]) for r in cells if len(r) == 5]

    assert killers(parallel.out) == killers(serial.out)
    assert [r[0] for r in killers(serial.out)] == ["pins-ignored", "no-shootdown"]
    # Off a terminal, each mutant run is a plain line on stderr, in either mode.
    for err in (serial.err, parallel.err):
        lines = err.splitlines()
        assert len(lines) == 2 and all(" run (" in line for line in lines), err


def test_validate_finds_a_hidden_dependency(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`--validate` turns on the footprint and hidden-state checks: a kernel
    whose flusher reads its stop flag without naming it fails, naming it."""
    from pagemap.check.footprints import VALIDATE_ENV
    from pagemap.kernel.flusher import Flusher

    monkeypatch.setenv(VALIDATE_ENV, "0")  # restored after the test
    monkeypatch.setattr(Flusher, "stop_requested", lambda self: self.stopping)
    args = ["check", "reclaim-contend", "--strategy", "random", "--budget", "12"]
    args += ["--traces", str(tmp_path), "--no-shrink"]
    assert main(args) == 0  # unvalidated, the hidden flag goes unseen
    assert main([*args, "--validate"]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "Flusher.stopping" in out and "footprint" in out
