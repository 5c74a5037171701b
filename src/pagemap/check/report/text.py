"""A Timeline for a terminal, with rich: a title in words, one line (or a few) per step.

Rules: no line is wider than the width asked for; every step keeps its number (the
step column never wraps); a failing step carries ✗ and a preempted one ⇆, so both
read without colour as well as with it.  Three layouts, the first that fits: full
(a column per field), medium (core and task share a column, so do operation and
object, and location and seed function; rich wraps what still does not fit), and
below WIDE columns narrow (flag changes shown as +X -Y, data beside the decoded
words, locations as file:line).  Columns empty for every step are dropped.  The
kernel functions a step ran besides its own (Row.ran) read "ran: f, g +2 more"
under its source, or under its effect when narrow.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, replace

from rich import box
from rich.cells import cell_len
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from pagemap.check.report.model import Row, Timeline, data_preview, ran_said
from pagemap.kernel.errors import InvalidArgument

WIDE = 140  # from this width on, every field has its own column
PREEMPT_MARK = "⇆"
FAIL_MARK = "✗"
RACE_MARK = "↯"
ALSO_MARK = "⇵"
_WORDS = (("slot", "slot"), ("flags", "flags"), ("pte", "PTE"), ("value", ""))
_DECODED = "decoded (slot: ref|R|ppn)"
_LONG_CHANGE = 28  # a "before -> after" longer than this puts "-> after" on its own line


def render_text(timeline: Timeline, width: int, color: bool = False) -> str:
    """`timeline` as text `width` columns wide; with ANSI colours when `color`."""
    if width < 40:
        raise InvalidArgument(f"a timeline needs at least 40 columns of text, not {width}")
    out = io.StringIO()
    console = Console(
        file=out,
        width=width,
        force_terminal=color,
        color_system="standard" if color else None,
        no_color=not color,
        highlight=False,
        emoji=False,
    )
    console.print(timeline_renderable(timeline, width), soft_wrap=False)
    return out.getvalue()


def timeline_renderable(timeline: Timeline, width: int) -> RenderableType:
    """The title, the table of steps and the verdict, for a console `width` wide."""
    timeline.validate()
    return Group(_title(timeline), _table(timeline, width), _legend(timeline), _verdict(timeline))


# -- title, legend, verdict ----------------------------------------------------------


def _title(t: Timeline) -> Text:
    text = Text(t.title, style="bold")
    who = ", ".join(f"{task.name} on core {task.core}" for task in t.tasks)
    counts = (
        f"{t.cores} core{_s(t.cores)}, {len(t.tasks)} task{_s(len(t.tasks))}"
        + (f" ({who})" if who else "")
        + f", {len(t.rows)} step{_s(len(t.rows))}, {t.preemptions} preemption{_s(t.preemptions)}"
    )
    text.append("\n" + counts, style="dim")
    if t.summary:
        text.append("\n" + t.summary, style="dim")
    return text


def _legend(t: Timeline) -> Text:
    parts = []
    if t.preemptions:
        parts.append(f"{PREEMPT_MARK} preempted: switched to from a task that could have gone on")
    if t.failing_steps:
        parts.append(f"{FAIL_MARK} failing: the oracle's message is about this step")
    if t.racing_steps:
        parts.append(f"{RACE_MARK} racing: the pair of steps the violation turns on")
    if t.also_racing_steps:
        parts.append(f"{ALSO_MARK} racing too: a step of another race whose swap passes")
    return Text("; ".join(parts), style="dim")


def _verdict(t: Timeline) -> Text:
    v = t.verdict
    if v is None:
        return Text("no oracle failed", style="green")
    text = Text("VIOLATION ", style="bold red")
    text.append(f"{v.oracle}: ", style="bold")
    text.append(v.message)
    if t.failing_steps:
        text.append("\nfailing step" + _s(len(t.failing_steps)) + ": ")
        text.append(", ".join(str(n) for n in t.failing_steps), style="bold red")
    if t.race:
        text.append(f"\n{RACE_MARK} {t.race}")
    if v.replay_command:
        text.append(f"\nreplay: {v.replay_command}")
    return text


# -- the table -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Column:
    heading: str
    cell: Callable[[Row], str]
    no_wrap: bool = False
    right: bool = False


def _table(t: Timeline, width: int) -> Table:
    columns = _layout(t, width)
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False, show_edge=False)
    for c in columns:
        table.add_column(
            c.heading, no_wrap=c.no_wrap, overflow="fold", justify="right" if c.right else "left"
        )
    for r in t.rows:
        style = "bold red" if r.failing else ("yellow" if r.preempted else "")
        # Text, not markup: "pte[p1:0x10000]" would read as a style tag and vanish.
        table.add_row(*(Text(c.cell(r)) for c in columns), style=style)
    return table


def _layout(t: Timeline, width: int) -> list[_Column]:
    """The full layout if it fits as it is; else the medium one, wrapped by rich as it
    needs, from WIDE columns on; else the narrow one.  Empty columns are dropped."""

    slots = any(r.slot for r in t.rows)

    def used(columns: list[_Column]) -> list[_Column]:
        kept = [c for c in columns if any(c.cell(r) for r in t.rows)]
        # A model with no slot word (a user's own) has no slot legend to read.
        return [c if slots or c.heading != _DECODED else replace(c, heading="value") for c in kept]

    full = used(_full_columns())
    if _natural_width(t, full) <= width:
        return full
    return used(_medium_columns() if width >= WIDE else _narrow_columns())


def _natural_width(t: Timeline, columns: list[_Column]) -> int:
    def widest(c: _Column) -> int:
        lines = [c.heading, *(line for r in t.rows for line in c.cell(r).split("\n"))]
        return max(cell_len(line) for line in lines)

    return sum(widest(c) + 2 for c in columns) - 2  # a pad and a rule between columns


def _step(r: Row) -> str:
    return str(r.step)


def _full_columns() -> list[_Column]:
    return [
        _Column("step", _step, no_wrap=True, right=True),
        _Column("", _marks, no_wrap=True),
        _Column("core", lambda r: str(r.core), no_wrap=True, right=True),
        _Column("task", lambda r: r.task),
        _Column("operation", lambda r: r.operation),
        _Column("object", lambda r: r.obj),
        _Column(_DECODED, lambda r: _words(r, full=True)),
        _Column("data", lambda r: _data(r.data, 8, "  ")),
        _Column("source", lambda r: r.location + _ran_line(r)),
        _Column("seed", lambda r: r.seed_function),
    ]


def _medium_columns() -> list[_Column]:
    return [
        _Column("step", _step, no_wrap=True, right=True),
        _Column("", _marks, no_wrap=True),
        _Column("core", lambda r: f"{r.core} {r.task}", no_wrap=True),
        _Column("operation", lambda r: f"{r.operation} {r.obj}".strip()),
        _Column(_DECODED, lambda r: _words(r, full=True)),
        _Column("data", lambda r: _data(r.data, 8, "\n")),
        _Column("source", _source_medium),
    ]


def _narrow_columns() -> list[_Column]:
    return [
        _Column("step", _step, no_wrap=True, right=True),
        _Column("", _marks, no_wrap=True),
        _Column("core", lambda r: f"{r.core} {r.task}", no_wrap=True),
        _Column("operation", lambda r: f"{r.operation} {r.obj}".strip()),
        _Column("decoded, data", _effect),
        _Column("source", _source_narrow, no_wrap=True),
    ]


def _marks(r: Row) -> str:
    marks = (PREEMPT_MARK if r.preempted else "") + (FAIL_MARK if r.failing else "")
    return marks + (RACE_MARK if r.racing else "") + (ALSO_MARK if r.also_racing else "")


def _words(r: Row, full: bool) -> str:
    """Each decoded word the step touched, labelled; a long change breaks before its
    arrow; narrow shows flag changes as +X -Y."""
    lines = []
    for field, label in _WORDS:
        text = getattr(r, field)
        if not text:
            continue
        if not full and field == "flags":
            text = _flag_changes(text)
        before, sep, after = text.partition(" -> ")
        shown = f"{label} {before}".strip()
        if sep:
            shown += ("\n→ " if len(text) > _LONG_CHANGE else " → ") + after
        lines.append(shown)
    if r.note:
        lines.append(f"({r.note})")
    return "\n".join(lines)


def _flag_changes(text: str) -> str:
    before, sep, after = text.partition(" -> ")
    if not sep:
        return text
    old, new = before.split("|"), after.split("|")
    added = [f"+{n}" for n in new if n not in old and n != "-"]
    dropped = [f"-{n}" for n in old if n not in new and n != "-"]
    return " ".join(added + dropped) or after


def _effect(r: Row) -> str:
    lines = [w] if (w := _words(r, full=False)) else []
    if r.data:
        lines.append("data " + _data(r.data, 8, " "))
    return "\n".join(lines) + _ran_line(r)


def _data(hexdata: str, limit: int, between: str) -> str:
    if not hexdata:
        return ""
    shown, printable, total = data_preview(hexdata, limit)
    more = f" … {total} B" if total > limit else ""
    return f'{shown}{between}"{printable}"{more}'


def _source_medium(r: Row) -> str:
    return r.location + (f"\nseed: {r.seed_function}" if r.seed_function else "") + _ran_line(r)


def _ran_line(r: Row) -> str:
    """Under a step's source, the kernel functions it ran besides (the first few)."""
    return f"\n{ran_said(r.ran)}" if r.ran else ""


def _source_narrow(r: Row) -> str:
    place = r.location.partition(" ")[0]
    return place.rsplit("/", 1)[-1]


def _s(n: int) -> str:
    return "" if n == 1 else "s"
