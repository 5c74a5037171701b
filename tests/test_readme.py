"""The README's examples (and those it moved to docs/) run as written, and make
their particular claims; tests/test_docs.py runs every block of every page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pagemap.check.model import CounterexampleFound

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def python_blocks(page: Path = README) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def test_readme_opens_with_exactly_the_two_commands() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README.read_text(), flags=re.S)
    assert first_block is not None
    assert first_block.group(1).split("\n")[:2] == ["make run", "make test"]
    assert first_block.group(1).strip().count("\n") == 1


def test_the_first_screen_says_what_pagemap_is_for_and_who_for() -> None:
    text = README.read_text()
    before = text[: text.index("```sh")]
    assert before.startswith("# pagemap\n")
    assert "pagemap is for " in before and "It is for " in before
    assert before.count("\n") + 4 <= 24  # the two commands still on the first screen


def block_with(marker: str, page: Path) -> str:
    (code,) = [b for b in python_blocks(page) if marker in b]
    return code


def test_the_race_window_example_finds_its_race() -> None:
    page = ROOT / "docs" / "writing-a-model.md"
    exec(compile(block_with("class Slots", page), str(page), "exec"), {})


def test_the_page_map_example_holds_to_the_end() -> None:
    page = ROOT / "docs" / "writing-a-model.md"
    exec(compile(block_with("class Disk", page), str(page), "exec"), {})


def test_the_machine_example_runs(tmp_path: Path) -> None:
    code = python_blocks()[0].replace("/tmp/data.bin", str(tmp_path / "data.bin"))
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "data.bin").read_bytes() == b"hello, world___!"


def test_the_explore_example_finds_the_lost_update() -> None:
    with pytest.raises(CounterexampleFound, match="4 steps, 1 preemption:"):
        exec(compile(python_blocks()[1], "README.md", "exec"), {})


def test_the_lifecycle_example_runs() -> None:
    page = ROOT / "docs" / "machine-api.md"
    exec(compile(block_with("with Machine(", page), str(page), "exec"), {})
