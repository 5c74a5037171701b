"""Scenario coverage: which lines and branches of the kernel no scenario reaches.

What no scenario reaches, no strategy can find a race in.  `pagemap check
--coverage` runs the scenarios under branch coverage (coverage.py, with its
greenlet support) and reports, for kernel/ and hw/, the lines and branches
not reached, less those listed in `unreached.txt` beside this file, each
with the reason no scenario needs to reach it.  The scenarios run in `--jobs`
worker processes, one scenario at a time each, and their data are combined.
An entry names code by text, never by line number, so the list survives edits
that move lines:

    kernel/mm.py: raise InvalidArgument("munmap: length 0")  # one line, by its text
    kernel/mm.py: if self.exited:  # a header lists its block (not an if's else)
    kernel/vfs.py: def Vfs.chmod  # a function or method, every line of it
    kernel/fs/ext2/dir.py: class DirBlock  # a class, every line of it
    kernel/policy/opt.py: *  # the whole file

An entry that matches nothing left unreached (the code is reached now, or is
gone) is reported as stale, so the list cannot quietly outgrow its reasons.

Races too: each worker also takes a census of the races its scenario reaches
(check/races.py), and the report lists the kernel functions that take points
but that no scenario races, less the entries

    kernel/page.py: race PageAllocator.decref  # why no scenario need race it

(stale, too, once the function is raced or takes no point).
"""

from __future__ import annotations

import ast
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import coverage

from pagemap.check.fanout import Stop, Unit
from pagemap.check.races import Census
from pagemap.check.workers import Pool, Stopped, WorkerFailed

MEASURED = ("pagemap.kernel", "pagemap.hw")
# An unreached.txt entry about a race, not a line: "FILE: race QUALNAME  # reason".
RACE = "race "


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
    races: Census = field(default_factory=Census)  # every scenario's, added up
    race_listed: dict[str, str] = field(default_factory=dict)  # function -> reason

    @property
    def unraced(self) -> list[str]:
        """Functions that take points, that no scenario races, not listed."""
        return [f for f in self.races.unraced() if f not in self.race_listed]

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
        lines = all(not f.missing_lines and not f.missing_branches for f in self.files)
        return lines and not self.unraced


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


# A worker (check/workers.py): a fresh interpreter, so that coverage starts
# before any of the kernel is imported (else every def and class line would read
# as unreached).  It answers each group of units with the messages of the
# violations found; at the end of its input it saves its data.
_WORKER = """
import coverage
cov = coverage.Coverage(
    data_file=sys.argv[2], branch=True, source=json.loads(sys.argv[1]),
    concurrency=["greenlet", "thread"],
)
cov.start()
from pagemap.check.fanout import Unit, run_serial
from pagemap.check.races import census
for line in sys.stdin:
    units = [Unit.from_json(u) for u in json.loads(line)]
    found = [s.trace.message for s in run_serial(units) if s.trace is not None]
    answer({"violations": found, "census": census(units[0].model()).to_json()})
cov.stop()
cov.save()
"""

# measure()'s `progress`: told (scenarios measured, scenarios in all, the one just measured).
Progress = Callable[[int, int, str], None]


def groups(units: Sequence[Unit]) -> list[tuple[str, list[Unit]]]:
    """The units by scenario, in the order of their first unit: what one worker
    runs at a time (a scenario's units stay together, in their planned order)."""
    by: dict[str, list[Unit]] = {}
    for u in units:
        by.setdefault(u.scenario, []).append(u)
    return list(by.items())


def measure(
    units: Sequence[Unit],
    exclusions: dict[str, dict[str, str]],
    jobs: int = 1,
    progress: Progress | None = None,
    stop: Stop | None = None,
) -> CoverageReport:
    """Run `units` under branch coverage of kernel/ and hw/, in `jobs` worker
    processes that take one scenario's units at a time, and report on their
    combined data.  Stopped (check/workers.py) if `stop` is requested first;
    the temp directory and the workers are gone however it ends."""
    todo = groups(units)

    def told(done: int, total: int, index: int) -> None:
        if progress is not None:
            progress(done, total, todo[index][0])

    with tempfile.TemporaryDirectory(prefix="pagemap-coverage-") as tmp:
        data_files = [os.path.join(tmp, f"data.{i}") for i in range(max(1, min(jobs, len(todo))))]
        source = json.dumps(list(MEASURED))
        with Pool(_WORKER, [[source, data] for data in data_files]) as pool:
            try:
                found = pool.map([[u.to_json() for u in us] for _, us in todo], told, stop)
                pool.finish()
            except WorkerFailed as exc:
                raise RuntimeError(f"the coverage run failed: {exc}") from None
        out = os.path.join(tmp, "cov.json")
        combined = coverage.Coverage(
            data_file=os.path.join(tmp, "combined"), branch=True, source=list(MEASURED)
        )
        combined.combine(data_files)
        combined.json_report(outfile=out)
        data = json.loads(Path(out).read_text())
    report = _report(data, exclusions)
    for doc in found:
        report.violations.extend(doc["violations"])
        report.races.add(Census.from_json(doc["census"]))
    report.race_listed = race_exclusions(exclusions)
    seen = set(report.races.steps)
    report.stale += [
        f"{f.split(': ', 1)[0]}: race {f.split(': ', 1)[1]}"
        for f in report.race_listed
        if f not in seen or report.races.raced[f]
    ]
    return report


def race_exclusions(exclusions: dict[str, dict[str, str]]) -> dict[str, str]:
    """The functions unreached.txt says no scenario need race, as check/races.py
    names them ("kernel/x.py: Class.method"), with the reasons."""
    return {
        f"{path}: {code[len(RACE) :]}": reason
        for path, codes in exclusions.items()
        for code, reason in codes.items()
        if code.startswith(RACE)
    }


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
        lines = {c: r for c, r in exclusions.get(rel, {}).items() if not c.startswith(RACE)}
        listing = _Listing(lines, Path(filename).read_text())
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
        if (path, code) not in used and not code.startswith(RACE)
    ]
    return CoverageReport(files, stale)


__all__ = [
    "CoverageReport",
    "FileReport",
    "Stopped",
    "default_exclusions",
    "groups",
    "load_exclusions",
    "measure",
]
