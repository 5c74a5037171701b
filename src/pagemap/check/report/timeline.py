"""A Timeline as one self-contained HTML page: one column per core, one row per step.

Rules: the page loads nothing from anywhere (its Content-Security-Policy allows
only its own inline style and script, by hash, and data: images), so it can be
mailed or attached as it is.  The whole table is in the HTML, so the page reads
without JavaScript; the script (timeline.js) adds the state panel and keyboard
navigation from a JSON data island, listening once on the document rather than on
each row; with the panel fixed and contained and the table's borders separate, a
selection repaints a row and the panel, not a table of thousands of rows
(test_thousands_of_steps_stay_navigable, test_rows_have_no_listeners_of_their_own).  Every string
of the timeline reaches the page escaped: as HTML text, or as JSON with <, > and
& written as \\u escapes so that no value can close the data island's tag.
"""

from __future__ import annotations

import base64
import hashlib
import json
from html import escape
from importlib.resources import files
from typing import Any

from pagemap.check.report.model import Row, Timeline, data_preview, ran_said, state_changes

PREVIEW_BYTES = 8  # bytes of a store or host write shown in the table; the panel has all

# The words a step decodes, shown under its operation: (Row field, label, hint).
_WORDS = (
    ("slot", "slot", "slot word: refcount|R(emoval)|ppn"),
    ("flags", "flags", "page flags"),
    ("pte", "PTE", "page table entry: ppn=N:P|W|U|A|D"),
    ("value", "", ""),
)

_PREEMPT_TITLE = "preempted: the scheduler switched here from a task that could have gone on"
_FAIL_TITLE = "failing: the oracle's message is about this step"
_RACE_TITLE = "racing: one of the pair of steps the violation turns on"
_ALSO_TITLE = "racing too: a step of another race whose swap makes the run pass"
_ARROW_TITLE = "the race: the first step of the pair ran before the second; the other order passes"
_RAN_TITLE = "the kernel functions this step ran after its point, before its task's next one"


def render_html(timeline: Timeline) -> str:
    """The page for `timeline` (validated first: a BadTimeline renders nothing)."""
    timeline.validate()
    css = _asset("timeline.css")
    js = _asset("timeline.js")
    with_data = any(r.data for r in timeline.rows)
    csp = (
        f"default-src 'none'; img-src data:; style-src '{_sha256(css)}'; script-src '{_sha256(js)}'"
    )
    title = escape(timeline.title)
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<link rel="icon" href="data:,">',
            f"<title>{title}</title>",
            f"<style>{css}</style>",
            "</head>",
            "<body>",
            _header(timeline),
            '<main id="main">',
            _table(timeline, with_data),
            "</main>",
            _panel(),
            f'<script type="application/json" id="timeline-data">{_island(timeline)}</script>',
            f"<script>{js}</script>",
            "</body>",
            "</html>",
            "",
        ]
    )


# -- the header: title, verdict, legend ------------------------------------------


def _header(t: Timeline) -> str:
    parts = ["<header>", f"<h1>{escape(t.title)}</h1>"]
    counts = (
        f"{t.cores} core{_s(t.cores)}, {len(t.tasks)} task{_s(len(t.tasks))}, "
        f"{len(t.rows)} step{_s(len(t.rows))}, {t.preemptions} preemption{_s(t.preemptions)}"
    )
    summary = f"{counts}. {t.summary}" if t.summary else counts
    parts.append(f'<p class="summary">{escape(summary)}</p>')
    parts.append(_verdict(t))
    marks = [
        f'<span class="mark preempt" title="{_PREEMPT_TITLE}">⇆</span> preempted',
        f'<span class="mark fail" title="{_FAIL_TITLE}">✗</span> failing',
    ]
    if t.racing_steps:
        marks.append(f'<span class="mark race" title="{_RACE_TITLE}">↯</span> racing')
    if t.also_racing_steps:
        marks.append(f'<span class="mark also-race" title="{_ALSO_TITLE}">⇵</span> racing too')
    parts.append(
        f'<p class="legend">{" ".join(marks)} '
        '<span class="keys">click a step, or use ↑ ↓ (j k), Home, End, '
        "n for the next failing step</span></p>"
    )
    parts.append("</header>")
    return "\n".join(parts)


def _verdict(t: Timeline) -> str:
    v = t.verdict
    if v is None:
        return '<section id="verdict" class="verdict ok"><p>No oracle failed.</p></section>'
    links = ", ".join(f'<a href="#step-{n}">step {n}</a>' for n in t.failing_steps)
    lines = [
        '<section id="verdict" class="verdict fail">',
        f'<p><strong class="oracle">{escape(v.oracle)}</strong> failed: '
        f'<span class="message">{escape(v.message)}</span></p>',
    ]
    if links:
        lines.append(f'<p class="failing-links">See {links}.</p>')
    if t.race:
        pair = " and ".join(f'<a href="#step-{n}">step {n}</a>' for n in t.racing_steps)
        if t.also_racing_steps:
            pair += "; also " + ", ".join(
                f'<a href="#step-{n}">step {n}</a>' for n in t.also_racing_steps
            )
        first, *others = t.race.split("\n")
        lines.append(
            f'<p class="race"><span class="mark race" title="{_RACE_TITLE}">↯</span> '
            f"{escape(first)} (see {pair})</p>"
        )
        if others:  # "N more races decide it too:", then a "- ..." line each
            items = "".join(f"<li>{escape(o.removeprefix('- '))}</li>" for o in others[1:])
            lines.append(f'<div class="race-more"><p>{escape(others[0])}</p><ul>{items}</ul></div>')
    if v.replay_command:
        lines.append(f"<p>Replay: <code>{escape(v.replay_command)}</code></p>")
    lines.append("</section>")
    return "\n".join(lines)


# -- the table ---------------------------------------------------------------------


def _table(t: Timeline, with_data: bool) -> str:
    head = ['<th class="step" scope="col">step</th>']
    arrow = _race_span(t)
    if arrow is not None:
        head.append(f'<th class="race-arrow" scope="col" title="{_ARROW_TITLE}">race</th>')
    for core in range(t.cores):
        names = ", ".join(task.name for task in t.tasks_on(core)) or "idle"
        head.append(
            f'<th class="core" scope="col" data-core="{core}">core {core}'
            f'<span class="tasks">{escape(names)}</span></th>'
        )
    if with_data:
        head.append('<th class="data" scope="col" title="bytes stored or written">data</th>')
    head.append('<th class="src" scope="col">source</th>')
    shared = {core for core in range(t.cores) if len(t.tasks_on(core)) > 1}
    body = [_row(i, r, t.cores, shared, with_data, arrow) for i, r in enumerate(t.rows)]
    return "\n".join(
        [
            f'<table id="timeline" data-cores="{t.cores}" data-steps="{len(t.rows)}">',
            f"<thead><tr>{''.join(head)}</tr></thead>",
            "<tbody>",
            *body,
            "</tbody>",
            "</table>",
        ]
    )


def _race_span(t: Timeline) -> tuple[int, int] | None:
    """The named race's two step numbers, earlier first, or None."""
    steps = t.racing_steps
    return (steps[0], steps[-1]) if len(steps) == 2 else None


def _arrow_cell(step: int, span: tuple[int, int]) -> str:
    """The race column: an arrow from the pair's first step down to its second."""
    first, second = span
    if step == first:
        part, glyph = "from", "●"
    elif step == second:
        part, glyph = "to", "▼"
    elif first < step < second:
        part, glyph = "through", ""  # the line is the cell's background (timeline.css)
    else:
        return '<td class="race-arrow"></td>'
    return f'<td class="race-arrow {part}">{glyph}</td>'


def _row(
    i: int, r: Row, cores: int, shared: set[int], with_data: bool, arrow: tuple[int, int] | None
) -> str:
    classes = ["step"]
    if r.preempted:
        classes.append("preempted")
    if r.failing:
        classes.append("failing")
    if r.racing:
        classes.append("racing")
    if r.also_racing:
        classes.append("also-racing")
    cells = [f'<th class="step" scope="row"><a href="#step-{r.step}">{r.step}</a></th>']
    if arrow is not None:
        cells.append(_arrow_cell(r.step, arrow))
    for core in range(cores):
        if core == r.core:
            cells.append(f'<td class="core active">{_activity(r, core in shared)}</td>')
        else:
            cells.append('<td class="core idle"></td>')
    if with_data:
        cells.append(f'<td class="data">{_data_preview(r.data)}</td>')
    cells.append(f'<td class="src">{_source(r)}</td>')
    return (
        f'<tr id="step-{r.step}" class="{" ".join(classes)}" data-index="{i}" '
        f'data-core="{r.core}">{"".join(cells)}</tr>'
    )


def _activity(r: Row, name_task: bool) -> str:
    """The active core's cell: marks, operation and object, then the words it decoded."""
    out = ""
    if r.preempted:
        out += f'<span class="mark preempt" title="{_PREEMPT_TITLE}">⇆</span>'
    if r.failing:
        out += f'<span class="mark fail" title="{_FAIL_TITLE}">✗</span>'
    if r.racing:
        out += f'<span class="mark race" title="{_RACE_TITLE}">↯</span>'
    if r.also_racing:
        out += f'<span class="mark also-race" title="{_ALSO_TITLE}">⇵</span>'
    out += f'<span class="op">{escape(r.operation)}</span> <span class="obj">{escape(r.obj)}</span>'
    if name_task:  # the heading names a core's only task; several need naming per step
        out += f'<span class="task">{escape(r.task)}</span>'
    for field, label, hint in _WORDS:
        text = getattr(r, field)
        if text:
            tag = f'<i title="{hint}">{label}</i> ' if label else ""
            out += f'<span class="word {field}">{tag}{_arrowed(text)}</span>'
    if r.note:
        out += f'<span class="note">{escape(r.note)}</span>'
    return out


def _arrowed(text: str) -> str:
    """ "a -> b" with the arrow drawn and the new value emphasised."""
    before, sep, after = text.partition(" -> ")
    if not sep:
        return escape(text)
    return f'{escape(before)}<b><span class="arrow">→</span>{escape(after)}</b>'


def _data_preview(hexdata: str) -> str:
    if not hexdata:
        return ""
    shown, text, total = data_preview(hexdata, PREVIEW_BYTES)
    more = f' <span class="more">… {total} B</span>' if total > PREVIEW_BYTES else ""
    return f"<code>{shown}</code><q>{escape(text)}</q>{more}"


def _source(r: Row) -> str:
    place, _, function = r.location.partition(" ")
    out = f"<code>{escape(place)}</code>" if place else ""
    if function:
        out += f'<span class="fn">{escape(function)}</span>'
    if r.seed_function:
        out += f'<span class="seed" title="the seed\'s C function">{escape(r.seed_function)}</span>'
    if r.ran:
        every = escape(", ".join(r.ran))
        out += f'<span class="ran" title="{_RAN_TITLE}: {every}">{escape(ran_said(r.ran))}</span>'
    return out


# -- the panel and its data ---------------------------------------------------------


def _panel() -> str:
    return "\n".join(
        [
            '<aside id="panel" aria-live="polite">',
            '<h2 id="panel-title">Machine state</h2>',
            '<p class="nojs">With JavaScript on, a click on a step shows the machine\'s '
            "state after it here, and what the step changed.</p>",
            '<div class="js-only">',
            '<dl id="panel-row"></dl>',
            '<h3>Changed by this step</h3><table id="panel-changes"></table>',
            '<h3>State after this step</h3><table id="panel-state"></table>',
            "</div>",
            "</aside>",
        ]
    )


def _island(t: Timeline) -> str:
    """The rows for the panel, each state kept as its changes from the one before."""
    rows: list[dict[str, Any]] = []
    for i, r in enumerate(t.rows):
        changes = state_changes(t.state_before(i), r.state)
        rows.append(
            {
                "step": r.step,
                "core": r.core,
                "task": r.task,
                "operation": r.operation,
                "obj": r.obj,
                "slot": r.slot,
                "flags": r.flags,
                "pte": r.pte,
                "value": r.value,
                "location": r.location,
                "seed_function": r.seed_function,
                "preempted": r.preempted,
                "failing": r.failing,
                "racing": r.racing,
                "data": r.data,
                "note": r.note,
                "ran": r.ran,
                "set": {n: a for n, _, a in changes if n in r.state},
                "del": [n for n, _, _ in changes if n not in r.state],
            }
        )
    text = json.dumps({"initial": t.initial, "rows": rows}, ensure_ascii=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _asset(name: str) -> str:
    return files("pagemap.check.report").joinpath(name).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")


def _s(n: int) -> str:
    return "" if n == 1 else "s"
