"""The docs build with no warning, and every code block of README.md and docs/*.md runs.

What a page's fenced blocks mean to this test:

- A ```python block runs, in page order, in one namespace per page (a block may
  use what an earlier block of its page defined), in a fresh temporary
  directory; a path under /tmp/ in it is taken under that directory instead.
- A ```sh block runs line by line, in page order, in one fresh directory per
  page (a `pagemap replay` finds the trace an earlier `pagemap check` wrote).
  Each line is a `pagemap ...` or `python -m ...` command and must exit 0,
  unless its comment says otherwise: `# exit 1: ...`.
- Any other fence (```text, a bare ```) is output or a listing, and is not run.

A block run otherwise is marked by an HTML comment, alone on the line just
before its fence (it does not show on the page):

- `<!-- not run: REASON -->`: skipped, for a reason (at most NOT_RUN_LIMIT
  blocks over every page: the long explorations and `make` itself);
- `<!-- raises: NAME -->`: a python block that must raise the exception NAME.

tests/test_readme.py holds the README's own blocks to their particular claims.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOT_RUN_LIMIT = 3
# A command that hangs must not hang the suite; none of the run ones takes seconds.
COMMAND_TIMEOUT = 300

FENCE = re.compile(
    r"(?:<!-- (?P<mark>[a-z ]+): (?P<arg>[^\n]*?) -->\n)?```(?P<lang>[a-z]*)\n(?P<body>.*?)```",
    re.S,
)


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    body: str
    mark: str | None
    arg: str | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    found = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start("lang")) + 1
        found.append(Block(page, line, m["lang"], m["body"], m["mark"], m["arg"]))
    return found


def runnable(page: Path, lang: str) -> list[Block]:
    return [b for b in blocks(page) if b.lang == lang and b.mark != "not run"]


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def test_the_docs_build_strictly_with_no_warning(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    assert (tmp_path / "index.html").exists() and (tmp_path / "cli" / "index.html").exists()


def test_marks_are_known_have_reasons_and_are_few() -> None:
    every = [b for page in PAGES for b in blocks(page)]
    for b in every:
        assert b.mark in (None, "not run", "raises"), f"{b.where}: unknown mark {b.mark!r}"
        assert b.mark is None or b.arg, f"{b.where}: a mark needs its reason or exception"
        assert b.mark != "raises" or b.lang == "python", f"{b.where}: only python blocks raise"
    assert len([b for b in every if b.mark == "not run"]) <= NOT_RUN_LIMIT


@pytest.mark.parametrize("page", [p for p in PAGES if runnable(p, "python")], ids=page_id)
def test_every_python_block_runs(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for b in runnable(page, "python"):
        code = compile(b.body.replace("/tmp/", f"{tmp_path}/"), b.where, "exec")
        if b.mark == "raises":
            with pytest.raises(Exception) as raised:
                exec(code, namespace)
            assert type(raised.value).__name__ == b.arg, f"{b.where}: raised {raised.value!r}"
        else:
            exec(code, namespace)


def commands(b: Block) -> list[tuple[list[str], int]]:
    """Each line of a sh block as argv (for this interpreter) and its expected exit."""
    found = []
    for line in b.body.splitlines():
        if not line.strip():
            continue
        argv = shlex.split(line, comments=True)
        expected = re.search(r"#\s*exit (\d+)", line)
        if argv[0] == "pagemap":
            argv = [sys.executable, "-m", "pagemap", *argv[1:]]
        elif argv[:2] == ["python", "-m"]:
            argv = [sys.executable, *argv[1:]]
        else:
            raise AssertionError(f"{b.where}: {line!r} is not a pagemap command; mark it not run")
        found.append((argv, int(expected[1]) if expected else 0))
    return found


@pytest.mark.parametrize("page", [p for p in PAGES if runnable(p, "sh")], ids=page_id)
def test_every_sh_block_runs(page: Path, tmp_path: Path) -> None:
    for b in runnable(page, "sh"):
        for argv, expected in commands(b):
            done = subprocess.run(
                argv, cwd=tmp_path, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
            )
            shown = f"{b.where}: {shlex.join(argv[1:])} exited {done.returncode}\n{done.stderr}"
            assert done.returncode == expected, shown
            assert "Traceback" not in done.stderr, shown


def test_a_command_the_runner_does_not_know_must_be_marked() -> None:
    b = Block(ROOT / "README.md", 1, "sh", "make test\n", None, None)
    with pytest.raises(AssertionError, match="mark it not run"):
        commands(b)


def slug(heading: str) -> str:
    """A heading's anchor, as mkdocs's toc (and GitHub) make it."""
    return re.sub(r"[\s]+", "-", re.sub(r"[^\w\s-]", "", heading.strip().lower()))


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(h) for h in re.findall(r"^#+ (.*)$", text, flags=re.M)}


def test_every_link_of_the_readme_resolves() -> None:
    """mkdocs checks the links between docs pages; this checks the README's."""
    readme = ROOT / "README.md"
    links = re.findall(r"\]\(([^)\s]+)\)", readme.read_text())
    assert links
    for link in links:
        if link.startswith(("http://", "https://")):
            continue
        path, _, anchor = link.partition("#")
        target = (ROOT / path) if path else readme
        assert target.exists(), f"README.md links to {link}, which does not exist"
        assert not anchor or anchor in anchors(target), f"README.md: no #{anchor} in {path}"


def test_the_readme_gives_the_current_count_of_scenarios() -> None:
    from pagemap.check.scenarios import registry, zoo

    said = re.search(
        r"today (\d+) of them, and (\d+) more in the zoo", (ROOT / "README.md").read_text()
    )
    assert said is not None, "the README no longer says how many scenarios there are"
    assert (int(said[1]), int(said[2])) == (len(registry()), len(zoo()))
