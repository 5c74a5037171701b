"""Scenario coverage: which lines and branches of the kernel no scenario reaches.

What no scenario reaches, no strategy can find a race in.  `pagemap check
--coverage` runs the scenarios under branch coverage (coverage.py, with its
greenlet support) and reports, for kernel/ and hw/, the lines and branches
not reached, less those listed in `unreached.txt` beside this file, each
with the reason no scenario needs to reach it.  An entry names code by text,
never by line number, so the list survives edits that move lines:

    kernel/mm.py: raise InvalidArgument("munmap: length 0")  # one line, by its text
    kernel/mm.py: if self.exited:  # a header lists its block (not an if's else)
    kernel/vfs.py: def Vfs.chmod  # a function or method, every line of it
    kernel/fs/ext2/dir.py: class DirBlock  # a class, every line of it
    kernel/policy/opt.py: *  # the whole file

An entry that matches nothing left unreached (the code is reached now, or is
gone) is reported as stale, so the list cannot quietly outgrow its reasons.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from pagemap.check.fanout import Unit

MEASURED = ("pagemap.kernel", "pagemap.hw")


@dataclass
class FileReport:
    path: str  # relative to the package: "kernel/pagemap.py"
    statements: int = 0
    branches: int = 0
    missing_lines: list[int] = field(default_factory=list)
    missing_branches: list[tuple[int, int]] = field(default_factory=list)
    listed_lines: int = 0
    listed_branches: int = 0


@dataclass
class CoverageReport:
    files: list[FileReport]
    stale: list[str]  # entries of unreached.txt that match no line
    violations: list[str] = field(default_factory=list)  # found on the way

    @property
    def reached(self) -> tuple[int, int]:
        """(lines and branches reached, lines and branches not listed)."""
        total = sum(
            f.statements + f.branches - f.listed_lines - f.listed_branches for f in self.files
        )
        missing = sum(len(f.missing_lines) + len(f.missing_branches) for f in self.files)
        return total - missing, total

    @property
    def complete(self) -> bool:
        return all(not f.missing_lines and not f.missing_branches for f in self.files)


def load_exclusions(text: str) -> dict[str, dict[str, str]]:
    """file -> {entry (a line's text, `def NAME`, `class NAME` or `*`) -> reason}."""
    out: dict[str, dict[str, str]] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        path, sep, rest = line.partition(": ")
        code, hash_, reason = rest.rpartition("  # ")
        if not sep or not hash_ or not code.strip() or not reason.strip():
            raise ValueError(
                f"unreached.txt line {n}: expected 'FILE: CODE  # REASON', not {raw!r}"
            )
        out.setdefault(path.strip(), {})[code.strip()] = reason.strip()
    return out


def default_exclusions() -> dict[str, dict[str, str]]:
    return load_exclusions(resources.files("pagemap.check").joinpath("unreached.txt").read_text())


# Run in a fresh interpreter, so that coverage starts before any of the
# kernel is imported (else every def and class line would read as unreached).
_CHILD = """
import json, sys
import coverage
cov = coverage.Coverage(data_file=None, branch=True, source=%r, concurrency=["greenlet", "thread"])
cov.start()
from pagemap.check.fanout import Unit, run_serial
raw = json.load(open(sys.argv[1]))
units = [Unit.from_json(u) for u in raw]
found = [s.trace.message for s in run_serial(units) if s.trace is not None]
cov.stop()
cov.json_report(outfile=sys.argv[2])
json.dump(found, open(sys.argv[3], "w"))
"""


def measure(units: Sequence[Unit], exclusions: dict[str, dict[str, str]]) -> CoverageReport:
    """Run `units` under branch coverage of kernel/ and hw/, and report."""
    with tempfile.TemporaryDirectory(prefix="pagemap-coverage-") as tmp:
        plan, out, found = (os.path.join(tmp, n) for n in ("units.json", "cov.json", "found.json"))
        Path(plan).write_text(json.dumps([u.to_json() for u in units]))
        child = subprocess.run(
            [sys.executable, "-c", _CHILD % (list(MEASURED),), plan, out, found],
            capture_output=True,
            text=True,
        )
        if child.returncode != 0:
            last = (child.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"the coverage run failed: {last}")
        data = json.loads(Path(out).read_text())
        violations = json.loads(Path(found).read_text())
    report = _report(data, exclusions)
    report.violations = violations
    return report


def _spans(source: str) -> dict[str, tuple[int, int]]:
    """`def QUALNAME` / `class QUALNAME` -> (first line, last line), decorators included."""
    spans: dict[str, tuple[int, int]] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                kind = "class" if isinstance(child, ast.ClassDef) else "def"
                name = f"{prefix}{child.name}"
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                spans[f"{kind} {name}"] = (first, child.end_lineno or child.lineno)
                visit(child, f"{name}.")

    visit(ast.parse(source), "")
    return spans


_HEADERS = (ast.If, ast.For, ast.While, ast.With, ast.ExceptHandler)


def _blocks(source: str, lines: list[str], texts: set[str]) -> list[tuple[str, tuple[int, int]]]:
    """A listed `if`, `for`, `while`, `with` or `except` line lists its body too
    (not an `if`'s else): the reason that keeps the header unreached keeps
    what it guards unreached."""
    found: list[tuple[str, tuple[int, int]]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, _HEADERS):
            text = lines[node.lineno - 1].strip()
            if text in texts:
                last = node.body[-1].end_lineno or node.body[-1].lineno
                found.append((text, (node.lineno, last)))
    return found


class _Listing:
    """The entries of unreached.txt for one file, matched against its source."""

    def __init__(self, listed: dict[str, str], source: str) -> None:
        self.lines = source.splitlines()
        self.everything = "*" in listed
        named = [code for code in listed if code.startswith(("def ", "class "))]
        spans = _spans(source) if named else {}
        self.ranges = [(code, spans[code]) for code in named if code in spans]
        self.texts = set(listed) - set(named) - {"*"}
        if self.texts:
            self.ranges += _blocks(source, self.lines, self.texts)
        self.used: set[str] = set()

    def covers(self, lineno: int) -> bool:
        if self.everything:
            self.used.add("*")
            return True
        for code, (first, last) in self.ranges:
            if first <= lineno <= last:
                self.used.add(code)
                return True
        text = self.lines[lineno - 1].strip() if 0 < lineno <= len(self.lines) else ""
        if text in self.texts:
            self.used.add(text)
            return True
        return False


def _report(data: dict[str, object], exclusions: dict[str, dict[str, str]]) -> CoverageReport:
    files: list[FileReport] = []
    used: set[tuple[str, str]] = set()
    raw_files = data.get("files", {})
    assert isinstance(raw_files, dict)
    for filename, info in sorted(raw_files.items()):
        cut = filename.rfind("pagemap/")
        rel = filename[cut + len("pagemap/") :] if cut >= 0 else filename
        listing = _Listing(exclusions.get(rel, {}), Path(filename).read_text())
        summary = info["summary"]
        report = FileReport(rel, summary["num_statements"], summary.get("num_branches", 0))
        for lineno in info["missing_lines"]:
            if listing.covers(lineno):
                report.listed_lines += 1
            else:
                report.missing_lines.append(lineno)
        for src, dst in info.get("missing_branches", []):
            # A branch is listed from either end: listing `raise X` lists `if bad:`'s
            # jump to it.  (A negative dst is an exit from the function.)
            if listing.covers(src) or (dst > 0 and listing.covers(dst)):
                report.listed_branches += 1
            else:
                report.missing_branches.append((src, dst))
        files.append(report)
        used.update((rel, code) for code in listing.used)
    stale = [
        f"{path}: {code}"
        for path, codes in exclusions.items()
        for code in codes
        if (path, code) not in used
    ]
    return CoverageReport(files, stale)


__all__ = ["CoverageReport", "FileReport", "default_exclusions", "load_exclusions", "measure"]
