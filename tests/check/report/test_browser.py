"""The timeline page in a real headless Chromium, driven by Playwright.

Chromium is the system's (Debian: `apt-get install chromium`; `make test` installs
it when missing and running as root); Playwright's own browser download is never
used.  Without Chromium these tests fail, with the line that says what to install:
they do not skip.  One browser serves the whole module (a few seconds); the
xdist_group keeps the module on one worker under `pytest -n 2 --dist loadgroup`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, Request, sync_playwright

from pagemap.check.report import Timeline, long_timeline, render_html, sample_timeline

pytestmark = pytest.mark.xdist_group("browser")

INSTALL = (
    "the browser tests need Chromium: install it as root (Debian: apt-get install chromium), "
    "or set PAGEMAP_CHROMIUM to its path"
)
# Chromium otherwise reaches for the network at start (updates, sync, QUIC probes).
QUIET = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    named = os.environ.get("PAGEMAP_CHROMIUM")
    if named:
        if not os.access(named, os.X_OK):
            pytest.fail(f"PAGEMAP_CHROMIUM={named} is not an executable file; {INSTALL}")
        return named
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(INSTALL)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    executable = chromium()
    profile = tmp_path_factory.mktemp("chromium-profile")  # fresh: no state between runs
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=executable, headless=True, args=QUIET
        )
        context.set_default_timeout(15_000)
        try:
            yield context
        finally:
            context.close()


@dataclass
class Opened:
    """A page showing a timeline, and everything that went wrong while it loaded."""

    page: Page
    url: str
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def selected(self) -> int:
        step: Any = self.page.eval_on_selector("#timeline tr.selected", "tr => tr.id")
        return int(str(step).removeprefix("step-"))

    def panel_state(self) -> dict[str, str]:
        pairs: Any = self.page.eval_on_selector_all(
            "#panel-state tr",
            "trs => trs.map(tr => [tr.cells[0].textContent, tr.cells[1].textContent])",
        )
        return {str(k): str(v) for k, v in pairs}

    def panel_changes(self) -> list[list[str]]:
        rows: Any = self.page.eval_on_selector_all(
            "#panel-changes tr", "trs => trs.map(tr => Array.from(tr.cells, c => c.textContent))"
        )
        return [[str(c) for c in r] for r in rows]


def open_timeline(
    browser: BrowserContext, tmp_path: Path, timeline: Timeline, script: bool = True
) -> Opened:
    path = tmp_path / "timeline.html"
    path.write_text(render_html(timeline), encoding="utf-8")
    page = browser.new_page()
    opened = Opened(page, path.as_uri())

    def console(msg: ConsoleMessage) -> None:
        if msg.type in ("error", "warning"):
            opened.errors.append(f"console {msg.type}: {msg.text}")

    def failed(req: Request) -> None:
        opened.failed.append(f"{req.url}: {req.failure}")

    page.on("console", console)
    page.on("pageerror", lambda exc: opened.errors.append(f"page error: {exc}"))
    page.on("request", lambda req: opened.requests.append(req.url))
    page.on("requestfailed", failed)
    if not script:
        cdp = browser.new_cdp_session(page)
        cdp.send("Emulation.setScriptExecutionDisabled", {"value": True})
    page.goto(opened.url, wait_until="load")
    return opened


@pytest.fixture
def sample_page(browser: BrowserContext, tmp_path: Path) -> Iterator[Opened]:
    opened = open_timeline(browser, tmp_path, sample_timeline())
    yield opened
    opened.page.close()


def test_the_page_loads_with_no_error_and_no_request_but_itself(sample_page: Opened) -> None:
    assert sample_page.errors == []
    assert sample_page.failed == []
    assert [u for u in sample_page.requests if not u.startswith("data:")] == [sample_page.url]
    assert sample_page.page.title() == sample_timeline().title


def test_one_column_per_core_and_one_row_per_step(sample_page: Opened) -> None:
    t = sample_timeline()
    page = sample_page.page
    assert page.locator("#timeline thead th.core").count() == t.cores
    assert page.locator("#timeline tbody tr").count() == len(t.rows)
    # Each step's operation sits in its core's column.
    columns: Any = page.eval_on_selector_all(
        "#timeline tbody tr",
        "trs => trs.map(tr => Array.from(tr.querySelectorAll('td.core'))"
        ".findIndex(td => td.classList.contains('active')))",
    )
    assert columns == [r.core for r in t.rows]
    first = page.locator("#step-1 td.active").inner_text()
    assert "tlb.lookup" in first and "tlb[0]" in first


def test_failing_rows_carry_the_failing_mark_and_stand_out(sample_page: Opened) -> None:
    t = sample_timeline()
    page = sample_page.page
    ids = page.eval_on_selector_all("#timeline tr.failing", "trs => trs.map(tr => tr.id)")
    assert ids == [f"step-{n}" for n in t.failing_steps]
    for n in t.failing_steps:
        assert page.locator(f"#step-{n} .mark.fail").is_visible()
    colour = "tr => getComputedStyle(tr.querySelector('td.idle')).backgroundColor"
    assert page.eval_on_selector("#step-22", colour) != page.eval_on_selector("#step-19", colour)
    preempted = page.eval_on_selector_all("#timeline tr.preempted", "trs => trs.map(tr => tr.id)")
    assert preempted == [f"step-{r.step}" for r in t.rows if r.preempted]
    assert page.locator("#step-15 .mark.preempt").is_visible()


def test_a_click_on_a_step_shows_its_state_and_what_it_changed(sample_page: Opened) -> None:
    t = sample_timeline()
    page = sample_page.page
    page.click("#step-16 td.active")
    assert sample_page.selected() == 16
    assert page.inner_text("#panel-title") == "Step 16: writer on core 0"
    assert not page.locator("#panel .nojs").is_visible()
    assert sample_page.panel_state() == t.rows[15].state
    assert sample_page.panel_changes() == [["frame[7][0:8]", '"hello..."', "→", '"world!.."']]
    assert "77 6f 72 6c 64 21" in page.inner_text("#panel-row")
    page.click("#step-20 td.src")  # anywhere on the row
    assert sample_page.selected() == 20
    assert sample_page.panel_state() == t.rows[19].state
    assert ["free frames", "5", "→", "6"] in sample_page.panel_changes()
    assert sample_page.errors == []


def test_the_keyboard_moves_the_selection(sample_page: Opened) -> None:
    t = sample_timeline()
    page = sample_page.page
    page.click("#step-5 td.active")
    page.keyboard.press("ArrowDown")
    assert sample_page.selected() == 6
    assert sample_page.panel_state() == t.rows[5].state
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    assert sample_page.selected() == 4
    page.keyboard.press("End")
    assert sample_page.selected() == len(t.rows)
    page.keyboard.press("ArrowDown")  # stays on the last step
    assert sample_page.selected() == len(t.rows)
    page.keyboard.press("Home")
    assert sample_page.selected() == 1
    page.keyboard.press("ArrowUp")  # stays on the first
    assert sample_page.selected() == 1
    page.keyboard.press("n")
    assert sample_page.selected() == t.failing_steps[0]
    page.keyboard.press("n")
    assert sample_page.selected() == t.failing_steps[1]
    page.keyboard.press("p")
    assert sample_page.selected() == t.failing_steps[0]
    page.keyboard.press("j")
    assert sample_page.selected() == t.failing_steps[0] + 1
    assert page.url.endswith(f"#step-{t.failing_steps[0] + 1}")


def test_the_verdict_links_select_the_failing_step(sample_page: Opened) -> None:
    page = sample_page.page
    page.click("#verdict a[href='#step-22']")
    assert sample_page.selected() == 22
    assert page.inner_text("#panel-title").startswith("Step 22:")
    assert page.locator("#step-22").is_visible()


def test_the_address_selects_a_step(browser: BrowserContext, tmp_path: Path) -> None:
    opened = open_timeline(browser, tmp_path, sample_timeline())
    try:
        opened.page.goto(opened.url + "#step-9")
        opened.page.reload()
        assert opened.selected() == 9
        assert opened.panel_changes() == [["pte[p1:0x10000]", "ppn=7:P|W|U|A|D", "→", "0"]]
    finally:
        opened.page.close()


def test_rows_have_no_listeners_of_their_own(browser: BrowserContext, sample_page: Opened) -> None:
    cdp = browser.new_cdp_session(sample_page.page)

    def listeners(expression: str) -> list[str]:
        found = cdp.send("Runtime.evaluate", {"expression": expression})
        got = cdp.send("DOMDebugger.getEventListeners", {"objectId": found["result"]["objectId"]})
        return sorted(entry["type"] for entry in got["listeners"])

    assert listeners("document.querySelector('#step-3')") == []
    assert listeners("document.querySelector('#timeline tbody')") == []
    assert listeners("document") == ["click", "keydown"]


def test_without_javascript_the_table_still_reads(browser: BrowserContext, tmp_path: Path) -> None:
    t = sample_timeline()
    opened = open_timeline(browser, tmp_path, t, script=False)
    try:
        page = opened.page
        assert page.locator("#timeline tbody tr").count() == len(t.rows)
        assert page.locator("#timeline tr.selected").count() == 0
        assert page.locator("#panel .nojs").is_visible()
        assert not page.locator("#panel .js-only").is_visible()
        assert "0|-|7" in page.inner_text("#step-6")
        assert opened.errors == []
    finally:
        opened.page.close()


def test_thousands_of_steps_stay_navigable(browser: BrowserContext, tmp_path: Path) -> None:
    t = long_timeline(3000)
    opened = open_timeline(browser, tmp_path, t)
    try:
        page = opened.page
        assert opened.errors == []
        assert page.locator("#timeline tbody tr").count() == 3000
        page.keyboard.press("End")
        assert opened.selected() == 3000
        assert opened.panel_state() == t.rows[-1].state
        assert page.locator("#step-3000").is_visible()
        # Around a checkpoint of the panel's state index (every 64 steps) and far from one.
        for step in (64, 65, 129, 1500, 2999):
            # A click event straight on the row: the listener is what is tested here;
            # real mouse clicks (scrolling, hit testing) are in the sample's tests.
            page.dispatch_event(f"#step-{step} td.active", "click")
            assert opened.selected() == step
            assert opened.panel_state() == t.rows[step - 1].state
        page.keyboard.press("ArrowUp")
        assert opened.selected() == 2998
        assert opened.panel_state() == t.rows[2997].state
    finally:
        opened.page.close()


# -- the page `pagemap replay TRACE --html FILE` writes for a real counterexample ---------


@pytest.fixture(scope="module")
def replayed_page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Timeline]:
    """A counterexample found by `pagemap check` under a broken kernel (writeback
    before the TLB shootdown), its page written by `pagemap replay --html`, and its
    timeline as `replay --json` gives it."""
    import io
    import json
    from contextlib import redirect_stdout

    from pagemap.check.mutants import MUTANTS
    from pagemap.cli import main

    tmp = tmp_path_factory.mktemp("replayed")
    mutant = next(m for m in MUTANTS if m.name == "dirty-before-shootdown")
    page = tmp / "timeline.html"
    out = io.StringIO()
    with mutant.applied(), redirect_stdout(out):
        assert main(["check", mutant.scenario, "--traces", str(tmp)]) == 1
        (trace,) = tmp.glob("*.json")
        assert main(["replay", str(trace), "--html", str(page)]) == 1
        out.seek(0)
        out.truncate()
        assert main(["replay", str(trace), "--json"]) == 1
    timeline = Timeline.from_dict(json.loads(out.getvalue())["timeline"])
    return page, timeline


def test_a_replayed_counterexample_reads_in_the_browser(
    browser: BrowserContext, replayed_page: tuple[Path, Timeline]
) -> None:
    path, t = replayed_page
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(path.as_uri(), wait_until="load")
        assert errors == []
        assert page.title() == t.title
        assert page.locator("#timeline thead th.core").count() == t.cores == 2
        assert page.locator("#timeline tbody tr").count() == len(t.rows)
        failing = page.eval_on_selector_all("#timeline tr.failing", "trs => trs.map(tr => tr.id)")
        assert failing == [f"step-{n}" for n in t.failing_steps] and failing
        preempted = page.eval_on_selector_all(
            "#timeline tr.preempted", "trs => trs.map(tr => tr.id)"
        )
        assert preempted == [f"step-{r.step}" for r in t.rows if r.preempted] and preempted
        # The race the violation turns on: its two rows marked, and said in the verdict.
        racing = page.eval_on_selector_all("#timeline tr.racing", "trs => trs.map(tr => tr.id)")
        assert racing == [f"step-{n}" for n in t.racing_steps] and len(racing) == 2
        for n in t.racing_steps:
            assert page.locator(f"#step-{n} .mark.race").is_visible()
        said = page.inner_text("#verdict .race")
        assert f"step {t.racing_steps[0]}" in said and f"step {t.racing_steps[1]}" in said
        # An arrow in the race column, from the pair's first step down to its second.
        first, second = t.racing_steps
        assert page.locator(f"#step-{first} td.race-arrow.from").is_visible()
        assert page.locator(f"#step-{second} td.race-arrow.to").is_visible()
        between = [r.step for r in t.rows if first < r.step < second]
        through = page.eval_on_selector_all(
            "#timeline td.race-arrow.through", "tds => tds.map(td => td.parentElement.id)"
        )
        assert through == [f"step-{n}" for n in between]
        # The other races whose swap passes: their steps marked too, and listed.
        also = page.eval_on_selector_all("#timeline tr.also-racing", "trs => trs.map(tr => tr.id)")
        assert also == [f"step-{n}" for n in t.also_racing_steps] and also
        for n in t.also_racing_steps:
            assert page.locator(f"#step-{n} .mark.also-race").is_visible()
            assert f"step {n}" in said
        # A click on a store shows the machine after it: the frame's new bytes among it.
        store = next(r for r in t.rows if r.operation == "frame.store")
        page.click(f"#step-{store.step} td.active")
        title = page.inner_text("#panel-title")
        assert title == f"Step {store.step}: {store.task} on core {store.core}"
        pairs: Any = page.eval_on_selector_all(
            "#panel-state tr",
            "trs => trs.map(tr => [tr.cells[0].textContent, tr.cells[1].textContent])",
        )
        assert {str(k): str(v) for k, v in pairs} == store.state
        assert "free frames" in store.state and any(k.startswith("frame ") for k in store.state)
        assert store.data[:16] in page.inner_text("#panel-row").replace(" ", "")
        # The failing step is one key press away.
        page.keyboard.press("Home")
        page.keyboard.press("n")
        assert page.eval_on_selector("#timeline tr.selected", "tr => tr.id") == (
            f"step-{t.failing_steps[0]}"
        )
        # A step that ran kernel functions between its point and its next one
        # names them in the table and, every one, in the panel.
        ran = next(r for r in t.rows if r.ran)
        assert page.locator(f"#step-{ran.step} .ran").inner_text().startswith("ran: " + ran.ran[0])
        page.click(f"#step-{ran.step} td.active")
        assert ", ".join(ran.ran) in page.inner_text("#panel-row")
        assert errors == []
    finally:
        page.close()
