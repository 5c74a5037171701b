"""The timeline for a terminal: widths, every step, marks, sources and bytes."""

from __future__ import annotations

import errno
import re

import pytest
from rich.cells import cell_len

from pagemap.check.report import Timeline, long_timeline, sample_timeline
from pagemap.check.report.text import FAIL_MARK, PREEMPT_MARK, render_text
from pagemap.kernel.errors import InvalidArgument

WIDTHS = (80, 100, 160, 240)


def step_lines(text: str, t: Timeline) -> dict[int, str]:
    """The line that opens each step: its number, right-aligned in the first column."""
    column = max(len("step"), len(str(t.rows[-1].step)))
    found: dict[int, str] = {}
    for line in text.splitlines():
        head = line[:column]
        if head.strip().isdigit() and line[column : column + 1] in (" ", ""):
            step = int(head)
            assert step not in found, f"step {step} opens two lines"
            found[step] = line
    return found


@pytest.mark.parametrize("width", WIDTHS)
def test_no_line_is_wider_than_the_width(width: int) -> None:
    text = render_text(sample_timeline(), width)
    assert max(cell_len(line) for line in text.splitlines()) <= width


@pytest.mark.parametrize("width", WIDTHS)
def test_every_step_is_present_in_order_with_its_core_and_operation(width: int) -> None:
    t = sample_timeline()
    lines = step_lines(render_text(t, width), t)
    assert list(lines) == [r.step for r in t.rows]
    for r in t.rows:
        assert r.task in lines[r.step] and r.operation in lines[r.step]


@pytest.mark.parametrize("width", WIDTHS)
def test_failing_and_preempted_steps_are_marked_and_no_others(width: int) -> None:
    t = sample_timeline()
    lines = step_lines(render_text(t, width), t)
    assert [n for n, line in lines.items() if FAIL_MARK in line] == t.failing_steps
    assert [n for n, line in lines.items() if PREEMPT_MARK in line] == [
        r.step for r in t.rows if r.preempted
    ]


def test_the_title_is_in_words() -> None:
    t = sample_timeline()
    text = render_text(t, 80)
    first = text.splitlines()[0]
    assert first == t.title
    assert "3 cores, 3 tasks (writer on core 0, remover on core 1, reader on core 2)" in (
        " ".join(text.split())
    )
    assert "{" not in text and "}" not in text


def step_blocks(text: str, t: Timeline) -> dict[int, list[str]]:
    """The words of each step's lines, from the line that opens it to the next one."""
    opening = {line: n for n, line in step_lines(text, t).items()}
    blocks: dict[int, list[str]] = {}
    current = 0
    for line in text.splitlines():
        current = opening.get(line, current)
        if current and current == t.rows[-1].step and not line.startswith(" "):
            break  # the legend and verdict follow the last step
        if current:
            blocks.setdefault(current, []).extend(line.split())
    return blocks


def shows(words: list[str], phrase: str) -> bool:
    """The phrase's words appear in order among `words` (a wrapped cell's words are
    interleaved with its neighbours', but keep their order)."""
    rest = iter(words)
    return all(any(w == p for w in rest) for p in phrase.split())


@pytest.mark.parametrize("width", WIDTHS)
def test_sources_bytes_and_decoded_words_are_shown(width: int) -> None:
    t = sample_timeline()
    blocks = step_blocks(render_text(t, width), t)
    assert shows(blocks[2], '68 65 6c 6c 6f "hello"')  # the store, as hex and text
    assert shows(blocks[16], '77 6f 72 6c 64 21 "world!"')  # the lost store
    assert shows(blocks[14], '68 65 6c 6c 6f 2e 2e 2e "hello..."')  # the host write
    assert shows(blocks[6], "slot 0|-|7 → 0|R|7")
    assert shows(blocks[9], "PTE ppn=7:P|W|U|A|D → 0")
    assert any(w.endswith("pagemap.py:624") for w in blocks[6])
    if width >= 160:
        assert shows(blocks[6], "kernel/pagemap.py:624 PageMap._mark_for_removal")
        assert "pm_slot_set_removal" in blocks[6]
        assert shows(blocks[7], "flags UPTODATE|PAGEMAP → UPTODATE|PAGEMAP|REMOVAL")
    else:
        assert shows(blocks[7], "flags +REMOVAL")
        assert shows(blocks[12], "flags -DIRTY")


@pytest.mark.parametrize("width", WIDTHS)
def test_the_functions_a_step_ran_are_named_a_few_at_most(width: int) -> None:
    t = sample_timeline()
    blocks = step_blocks(render_text(t, width), t)
    assert shows(blocks[5], "ran: slot_check_removal, slot_set_removal")
    assert shows(blocks[19], "ran: PageMap._marked_page, slot_get_ppn, slot_check_refcnt +1 more")
    assert "slot_check_removal" not in blocks[19]  # the fourth is only counted
    assert "ran:" not in blocks[6]


def test_the_verdict_names_the_oracle_the_failing_steps_and_the_replay() -> None:
    t = sample_timeline()
    flat = " ".join(render_text(t, 80).split())
    assert t.verdict is not None
    assert f"VIOLATION {t.verdict.oracle}: " in flat
    assert "failing steps: 16, 22" in flat
    assert f"replay: {t.verdict.replay_command}" in flat


def test_the_widest_layout_is_used_only_when_it_fits() -> None:
    t = sample_timeline()
    narrow, wide = render_text(t, 80), render_text(t, 240)
    assert "seed" not in narrow.splitlines()[4]  # narrow drops the seed column
    header = next(line for line in wide.splitlines() if line.lstrip().startswith("step"))
    assert re.search(r"\bseed\s*$", header)


def test_empty_columns_are_dropped() -> None:
    t = sample_timeline()
    for r in t.rows:
        r.data = ""
    for width in (80, 240):
        header = next(
            line for line in render_text(t, width).splitlines() if line.lstrip().startswith("step")
        )
        assert "data" not in header


def test_color_marks_failing_steps_in_red() -> None:
    t = sample_timeline()
    text = render_text(t, 160, color=True)
    assert "\x1b[" in text
    failing = next(line for line in text.splitlines() if FAIL_MARK in line and "\x1b[" in line)
    assert "\x1b[1;31m" in failing  # bold red
    assert "\x1b[" not in render_text(t, 160)


def test_thousands_of_steps_at_80_columns() -> None:
    t = long_timeline(2000)
    text = render_text(t, 80)
    lines = step_lines(text, t)
    assert list(lines) == list(range(1, 2001))
    assert [n for n, line in lines.items() if FAIL_MARK in line] == [2000]
    assert max(cell_len(line) for line in text.splitlines()) <= 80


def test_too_narrow_a_width_is_einval() -> None:
    with pytest.raises(InvalidArgument, match="at least 40 columns") as info:
        render_text(sample_timeline(), 30)
    assert info.value.errno == errno.EINVAL
