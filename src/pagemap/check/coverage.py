"""Scenario coverage: which lines and branches of the kernel no scenario reaches.

What no scenario reaches, no strategy can find a race in.  `pagemap check
--coverage` runs the scenarios under branch coverage (coverage.py, with its
greenlet support) and reports, for kernel/ and hw/, the lines and branches
not reached, less those listed in `unreached.txt` beside this file, each
with the reason no scenario needs to reach it (argument checks that tests
cover one call at a time, say).  A listed line is named by its file and its
text, so the list survives edits that move lines; a listed line that no
longer exists is reported as stale.

    kernel/mm.py: raise InvalidArgument(f"munmap: length 0")  # why
"""

from __future__ import annotations

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
    """file -> {stripped line text -> reason}."""
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


def _report(data: dict[str, object], exclusions: dict[str, dict[str, str]]) -> CoverageReport:
    files: list[FileReport] = []
    used: set[tuple[str, str]] = set()
    raw_files = data.get("files", {})
    assert isinstance(raw_files, dict)
    for filename, info in sorted(raw_files.items()):
        cut = filename.rfind("pagemap/")
        rel = filename[cut + len("pagemap/") :] if cut >= 0 else filename
        listed = exclusions.get(rel, {})
        source = Path(filename).read_text().splitlines()

        def is_listed(
            lineno: int,
            rel: str = rel,
            listed: dict[str, str] = listed,
            source: list[str] = source,
        ) -> bool:
            text = source[lineno - 1].strip() if 0 < lineno <= len(source) else ""
            if text in listed:
                used.add((rel, text))
                return True
            return False

        summary = info["summary"]
        report = FileReport(rel, summary["num_statements"], summary.get("num_branches", 0))
        for lineno in info["missing_lines"]:
            if is_listed(lineno):
                report.listed_lines += 1
            else:
                report.missing_lines.append(lineno)
        for src, dst in info.get("missing_branches", []):
            if is_listed(src):
                report.listed_branches += 1
            else:
                report.missing_branches.append((src, dst))
        files.append(report)
    stale = [
        f"{path}: {code}"
        for path, codes in exclusions.items()
        for code in codes
        if (path, code) not in used
    ]
    return CoverageReport(files, stale)


__all__ = ["CoverageReport", "FileReport", "default_exclusions", "load_exclusions", "measure"]
