"""Scenario coverage: the unreached list's entries, the report, and the command."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from pagemap.check import coverage
from pagemap.check.coverage import _report, _spans, default_exclusions, load_exclusions
from pagemap.cli import build_parser, main

SOURCE = """\
def alone(x):
    if x:
        return 1
    return 2


class Cache:
    @staticmethod
    def helper():
        return 3

    def get(self, x):
        if x:
            raise KeyError(x)
        return x
"""


def coverage_json(path: Path, missing: list[int], branches: list[list[int]]) -> dict[str, object]:
    """The part of coverage.py's JSON report that the report reads."""
    return {
        "files": {
            str(path): {
                "summary": {"num_statements": 11, "num_branches": 4},
                "missing_lines": missing,
                "missing_branches": branches,
            }
        }
    }


@pytest.fixture
def kernel_file(tmp_path: Path) -> Path:
    path = tmp_path / "pagemap" / "kernel" / "cache.py"
    path.parent.mkdir(parents=True)
    path.write_text(SOURCE)
    return path


def test_an_entry_names_a_line_a_function_a_method_a_class_or_the_file() -> None:
    text = """
# comment
kernel/a.py: raise KeyError(x)  # a line
kernel/a.py: def Cache.get  # a method
kernel/b.py: *  # a file
"""
    assert load_exclusions(text) == {
        "kernel/a.py": {"raise KeyError(x)": "a line", "def Cache.get": "a method"},
        "kernel/b.py": {"*": "a file"},
    }


@pytest.mark.parametrize(
    "line", ["kernel/a.py raise KeyError(x)  # no colon", "kernel/a.py: raise KeyError(x)"]
)
def test_an_entry_without_its_reason_or_file_is_refused_with_its_line_number(line: str) -> None:
    with pytest.raises(ValueError, match=r"unreached\.txt line 2: expected 'FILE: CODE  # REASON'"):
        load_exclusions("# header\n" + line)


def test_spans_cover_decorators_and_nest_methods_in_their_class() -> None:
    spans = _spans(SOURCE)
    assert spans["def alone"] == (1, 4)
    assert spans["class Cache"] == (7, 15)
    assert spans["def Cache.helper"] == (8, 10)  # from its decorator
    assert spans["def Cache.get"] == (12, 15)


def test_listed_code_is_left_out_of_the_missing_and_stale_entries_are_named(
    kernel_file: Path,
) -> None:
    data = coverage_json(kernel_file, [3, 10, 14], [[2, 3], [13, 14]])
    exclusions = {
        "kernel/cache.py": {
            "return 1": "a line",
            "def Cache.get": "a method",
            "def Cache.missing": "names nothing",
            "return 2": "reached",
        }
    }
    report = _report(data, exclusions)
    (f,) = report.files
    assert f.path == "kernel/cache.py"
    assert f.missing_lines == [10]  # helper's body is not listed
    assert f.missing_branches == []
    assert (f.listed_lines, f.listed_branches) == (2, 2)
    assert sorted(report.stale) == [
        "kernel/cache.py: def Cache.missing",
        "kernel/cache.py: return 2",
    ]
    assert report.reached == (15 - 4 - 1, 15 - 4)
    assert not report.complete


def test_a_whole_file_entry_lists_everything_missing_in_it(kernel_file: Path) -> None:
    data = coverage_json(kernel_file, [3, 10, 14], [[2, 3]])
    report = _report(data, {"kernel/cache.py": {"*": "not the kernel's"}})
    assert report.complete and report.stale == []
    assert report.reached == (11, 11)


def test_every_entry_of_the_shipped_list_names_code_that_exists() -> None:
    # The coverage run reports stale entries too; this catches a renamed function
    # or an edited line without running the scenarios.
    package = resources.files("pagemap")
    for rel, codes in default_exclusions().items():
        source = package.joinpath(rel).read_text()
        spans = _spans(source)
        texts = {line.strip() for line in source.splitlines()}
        ast.parse(source)
        for code in codes:
            if code.startswith("race "):  # a function no scenario need race
                assert f"def {code[len('race ') :]}" in spans, f"{rel}: {code}"
                continue
            assert code == "*" or code in spans or code in texts, f"{rel}: {code}"


def test_pagemap_check_coverage_reports_files_and_the_reached_figure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc = main(["check", "--coverage", "load-race", "--strategy", "dfs", "--budget", "20"])
    out = capsys.readouterr().out
    assert "scenario coverage of kernel/ and hw/" in out
    assert "kernel/pagemap.py" in out
    assert "not listed as unreachable" in out
    # And the races it reaches, per kernel function that takes points.
    assert "races reached" in out and "kernel/pagemap.py: PageMap._insert_page" in out
    assert "kernel functions that take scheduling points" in out
    # One small scenario leaves most of the kernel unreached: the run says so.
    assert rc == 1


def test_a_listed_header_lists_its_body_but_not_an_else(tmp_path: Path) -> None:
    path = tmp_path / "pagemap" / "kernel" / "guard.py"
    path.parent.mkdir(parents=True)
    path.write_text(
        "def f(x):\n    if x:\n        y = 1\n        return y\n    else:\n        return 2\n"
    )
    data: dict[str, object] = {
        "files": {
            str(path): {
                "summary": {"num_statements": 5, "num_branches": 2},
                "missing_lines": [3, 4, 6],
                "missing_branches": [[2, 3], [2, 6]],
            }
        }
    }
    (f,) = _report(data, {"kernel/guard.py": {"if x:": "a guard"}}).files
    assert f.missing_lines == [6]  # the else is not the header's block
    assert f.missing_branches == []  # both leave the listed header
    assert (f.listed_lines, f.listed_branches) == (2, 2)


# Two small scenarios, a few schedules each: the plumbing, not the figure.
SMALL = ["load-race", "load-remove", "--strategy", "dfs", "--budget", "20"]


def test_coverage_runs_in_jobs_workers_and_says_how_far_it_is_off_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    started: list[list[str]] = []
    popen = subprocess.Popen

    def spy(args: list[str], **kw: Any) -> Any:
        started.append(args)
        return popen(args, **kw)

    monkeypatch.setattr(subprocess, "Popen", spy)
    assert main(["check", "--coverage", *SMALL, "--jobs", "2"]) == 1  # most is unreached
    out, err = capsys.readouterr()
    assert len(started) == 2
    assert "2 scenarios, 2 units of work under branch coverage in 2 worker processes" in out
    lines = err.splitlines()
    assert len(lines) == 2 and all(line.startswith("pagemap check --coverage: ") for line in lines)
    assert {line.split(": ")[1].split()[0] for line in lines} == {"load-race", "load-remove"}
    assert "(2 of 2, " in lines[1]
    assert "not listed as unreachable" in out


def test_coverage_in_two_workers_is_coverage_in_one() -> None:
    from pagemap.check.command import plan
    from pagemap.check.scenarios import lookup

    args = build_parser().parse_args(["check", *SMALL])
    units = plan(args, {n: lookup(n).model() for n in ("load-race", "load-remove")})
    one, two = (coverage.measure(units, default_exclusions(), jobs) for jobs in (1, 2))
    assert one.reached == two.reached and one.reached[0] > 0
    assert [(f.path, f.missing_lines, f.missing_branches) for f in one.files] == [
        (f.path, f.missing_lines, f.missing_branches) for f in two.files
    ]


@pytest.mark.parametrize(
    ("signum", "code", "why"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C")]
)
def test_a_signal_stops_coverage_and_leaves_no_temp_directory_nor_worker(
    tmp_path: Path, signum: int, code: int, why: str
) -> None:
    temp = tmp_path / "temp"
    temp.mkdir()
    # The portfolio to the end of two scenarios: far longer than it takes to stop it.
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pagemap",
            "check",
            "--coverage",
            "write-remove",
            "load-remove",
            "--jobs",
            "2",
        ],
        env={**os.environ, "TMPDIR": str(temp)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while len(_processes_naming(str(temp))) < 2:  # both workers are running
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the coverage run never started its workers"
            time.sleep(0.05)
        child.send_signal(signum)
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == code, err
    assert list(temp.iterdir()) == []
    assert out.splitlines()[-1].startswith(f"STOPPED by {why}: "), out
    assert "Traceback" not in err, err
    assert not _processes_naming(str(temp)), "a coverage worker outlived the run"


def _processes_naming(text: str) -> list[int]:
    """The processes whose command line holds `text` (a worker names its data file)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(int(proc.name))
    return found
