"""The timeline page as HTML, read without a browser: its table, marks, escaping,
data island and self-containment.  tests/test_report_browser.py drives it in Chromium."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import replace
from html.parser import HTMLParser
from typing import Any

import pytest

from pagemap.check.report import BadTimeline, Timeline, render_html, sample_timeline


class _Page(HTMLParser):
    """Every start tag with its attributes, and the text inside each script and style."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.blocks: dict[str, list[str]] = {"script": [], "style": []}
        self.text: list[str] = []
        self._inside: str | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        if tag in self.blocks:
            self._inside = tag
            self.blocks[tag].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == self._inside:
            self._inside = None

    def handle_data(self, data: str) -> None:
        if self._inside is not None:
            self.blocks[self._inside][-1] += data
        else:
            self.text.append(data)

    def find(self, tag: str, cls: str = "") -> list[dict[str, str]]:
        """Start tags `tag` that have class `cls` (any class, when cls is "")."""
        return [a for t, a in self.tags if t == tag and (not cls or cls in _classes(a))]


def _classes(attrs: dict[str, str]) -> list[str]:
    return attrs.get("class", "").split()


@pytest.fixture(scope="module")
def sample() -> Timeline:
    return sample_timeline()


@pytest.fixture(scope="module")
def page(sample: Timeline) -> _Page:
    return _Page(render_html(sample))


def test_one_core_column_per_core_and_one_row_per_step(sample: Timeline, page: _Page) -> None:
    heads = page.find("th", "core")
    assert [h["data-core"] for h in heads] == [str(c) for c in range(sample.cores)]
    rows = [a for a in page.find("tr") if a.get("id", "").startswith("step-")]
    assert [a["id"] for a in rows] == [f"step-{r.step}" for r in sample.rows]
    assert [a["data-core"] for a in rows] == [str(r.core) for r in sample.rows]
    assert len(page.find("td", "active")) == len(sample.rows)
    assert len(page.find("td", "idle")) == len(sample.rows) * (sample.cores - 1)


def test_failing_and_preempted_rows_carry_their_class_and_mark(
    sample: Timeline, page: _Page
) -> None:
    def steps(cls: str) -> list[int]:
        return [int(a["id"].removeprefix("step-")) for a in page.find("tr", cls)]

    assert steps("failing") == sample.failing_steps
    assert steps("preempted") == [r.step for r in sample.rows if r.preempted]
    # One glyph per marked row, plus the one in the legend.
    assert len(page.find("span", "fail")) == len(sample.failing_steps) + 1
    assert len(page.find("span", "preempt")) == sample.preemptions + 1


def test_the_verdict_links_to_each_failing_step(sample: Timeline, page: _Page) -> None:
    links = [a["href"] for a in page.find("a") if a.get("href", "").startswith("#step-")]
    verdict_links = links[: len(sample.failing_steps)]
    assert verdict_links == [f"#step-{n}" for n in sample.failing_steps]
    text = "".join(page.text)
    assert sample.verdict is not None
    assert sample.verdict.message in text and sample.verdict.replay_command in text


def test_decoded_words_and_sources_are_in_the_table_for_reading_without_javascript(
    sample: Timeline, page: _Page
) -> None:
    text = "".join(page.text)
    for r in sample.rows:
        for word in (r.slot, r.flags, r.pte, r.value):
            for part in word.split(" -> "):
                assert part in text
        assert r.location.partition(" ")[0] in text
        assert r.seed_function in text
    assert "68 65 6c 6c 6f" in text  # the store of "hello", as hex
    assert "ran: slot_check_removal, slot_set_removal" in text
    assert "ran: PageMap._marked_page, slot_get_ppn, slot_check_refcnt +1 more" in text
    # Its title names every one.
    titles = [a["title"] for a in page.find("span", "ran")]
    assert len(titles) == 2
    assert titles[1].endswith(
        ": PageMap._marked_page, slot_get_ppn, slot_check_refcnt, slot_check_removal"
    )


def test_the_data_island_rebuilds_every_state(sample: Timeline, page: _Page) -> None:
    island = json.loads(page.blocks["script"][0])
    state = dict(island["initial"])
    assert state == sample.initial
    for row, entry in zip(sample.rows, island["rows"], strict=True):
        state.update(entry["set"])
        for name in entry["del"]:
            del state[name]
        assert state == row.state
        assert entry["step"] == row.step and entry["data"] == row.data
        assert entry["ran"] == row.ran  # the panel names every one


def test_the_page_loads_nothing_and_allows_only_its_own_inline_code(page: _Page) -> None:
    for tag, attrs in page.tags:
        for name in ("src", "href"):
            value = attrs.get(name, "")
            assert value == "" or value.startswith(("#", "data:")), (tag, attrs)
    csp = next(
        a["content"] for t, a in page.tags if a.get("http-equiv") == "Content-Security-Policy"
    )
    assert "default-src 'none'" in csp

    def digest(text: str) -> str:
        return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()

    assert f"'sha256-{digest(page.blocks['style'][0])}'" in csp
    assert f"'sha256-{digest(page.blocks['script'][1])}'" in csp
    assert "url(" not in page.blocks["style"][0] and "@import" not in page.blocks["style"][0]


def test_every_string_of_the_timeline_is_escaped() -> None:
    evil = "</script><script>alert(1)</script><!--"
    t = sample_timeline()
    t = replace(t, title=evil, summary=evil)
    t.rows[0].obj = evil
    t.rows[0].value = f"{evil} -> {evil}"
    t.rows[1].state[evil] = evil
    t.rows[1].location = f"x.py:1 {evil}"
    html = render_html(t)
    page = _Page(html)
    assert len(page.blocks["script"]) == 2  # the island and the code, no third
    assert "<script>alert" not in html
    island: dict[str, Any] = json.loads(page.blocks["script"][0])
    assert island["rows"][1]["set"][evil] == evil
    assert evil in "".join(page.text)


def test_a_timeline_without_a_verdict_says_no_oracle_failed() -> None:
    t = replace(sample_timeline(), verdict=None)
    for r in t.rows:
        r.failing = False
    page = _Page(render_html(t))
    assert "No oracle failed." in "".join(page.text)
    assert page.find("tr", "failing") == []


def test_a_core_running_several_tasks_names_the_task_in_each_cell() -> None:
    t = sample_timeline()
    t.tasks[2].core = 1
    for r in t.rows:
        if r.task == "reader":
            r.core = 1
    page = _Page(render_html(t))
    assert len(page.find("th", "core")) == 3
    assert len(page.find("span", "task")) == sum(1 for r in t.rows if r.core == 1)
    assert re.search(r"remover, reader", "".join(page.text))


def test_a_broken_timeline_renders_nothing() -> None:
    t = sample_timeline()
    t.rows[3].task = "ghost"
    with pytest.raises(BadTimeline, match="ghost"):
        render_html(t)
