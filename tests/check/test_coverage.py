"""Scenario coverage: the unreached list's entries, the report, and the command."""

from __future__ import annotations

import ast
from importlib import resources
from pathlib import Path

import pytest

from pagemap.check.coverage import _report, _spans, default_exclusions, load_exclusions
from pagemap.cli import main

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
            assert code == "*" or code in spans or code in texts, f"{rel}: {code}"


def test_pagemap_check_coverage_reports_files_and_the_reached_figure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc = main(["check", "--coverage", "load-race", "--strategy", "dfs", "--budget", "20"])
    out = capsys.readouterr().out
    assert "scenario coverage of kernel/ and hw/" in out
    assert "kernel/pagemap.py" in out
    assert "not listed as unreachable" in out
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
