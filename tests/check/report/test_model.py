"""The Timeline data model: its JSON round trip, its rules, and the sample."""

from __future__ import annotations

import errno
import json
from dataclasses import replace
from typing import Any

import pytest

from pagemap.check.report import (
    TIMELINE_VERSION,
    BadTimeline,
    Row,
    Timeline,
    long_timeline,
    sample_timeline,
    state_changes,
)


def _raw() -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(sample_timeline().to_json())
    return raw


def test_the_sample_tells_a_race_on_three_cores() -> None:
    t = sample_timeline()
    t.validate()
    assert t.cores == 3
    assert {r.core for r in t.rows} == {0, 1, 2}
    assert 18 <= len(t.rows) <= 25
    assert t.preemptions == 2
    assert t.failing_steps == [16, 22]
    assert t.verdict is not None and "16" in t.verdict.message
    assert [r.step for r in t.rows] == list(range(1, len(t.rows) + 1))
    # Each row's state is the one before it with the row's own effect applied.
    assert state_changes(t.initial, t.rows[0].state) == []
    assert state_changes(t.rows[1].state, t.rows[2].state) == [("pm.removal", "0", "1")]


def test_json_round_trips_unchanged() -> None:
    t = sample_timeline()
    text = t.to_json()
    assert isinstance(json.loads(text), dict)
    back = Timeline.from_json(text)
    assert back == t
    assert back.to_json(indent=1) == t.to_json(indent=1)


def test_json_round_trips_a_timeline_with_no_verdict_and_odd_text() -> None:
    t = replace(sample_timeline(), verdict=None, title='<b>"quoted"</b> & ünïcode ⇆')
    t.rows[0].state["</script>"] = "<!--"
    assert Timeline.from_json(t.to_json()) == t


def test_optional_fields_take_their_defaults() -> None:
    minimal = {
        "title": "t",
        "cores": 1,
        "tasks": [{"tid": 0, "name": "a", "core": 0}],
        "rows": [{"step": 1, "core": 0, "task": "a", "operation": "load"}],
    }
    t = Timeline.from_json(json.dumps(minimal))
    assert t.verdict is None and t.summary == "" and t.initial == {}
    assert t.rows[0] == Row(step=1, core=0, task="a", operation="load", obj="")
    assert t.version == TIMELINE_VERSION


def _broken(edit: Any) -> str:
    raw = _raw()
    edit(raw)
    return json.dumps(raw)


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda raw: raw.pop("rows"), "lacks the field 'rows'"),
        (lambda raw: raw.update(cores="3"), "'cores' must be a whole number"),
        (lambda raw: raw.update(cores=True), "'cores' must be a whole number"),
        (lambda raw: raw.update(cores=0), "at least one core"),
        (lambda raw: raw.update(colour="red"), "unknown field(s): colour"),
        (lambda raw: raw.update(version=TIMELINE_VERSION + 1), "reads up to version"),
        (lambda raw: raw["rows"][3].update(core=3), "rows[3] (step 4): core 3 is outside 0..2"),
        (lambda raw: raw["rows"][4].update(step=4), "step numbers must increase"),
        (lambda raw: raw["rows"][2].update(task="ghost"), "task 'ghost' is not among"),
        (lambda raw: raw["rows"][1].update(data="6x"), "data must be hex bytes"),
        (lambda raw: raw["rows"][1].update(data="686"), "data must be hex bytes"),
        (lambda raw: raw["rows"][1].update(preempted="yes"), "must be true or false"),
        (lambda raw: raw["rows"][1]["state"].update(x=1), "state['x'] must be a string"),
        (lambda raw: raw["tasks"][0].update(core=-1), "core -1 is outside"),
        (lambda raw: raw["tasks"][2].update(name="writer"), "another task has the same name"),
        (lambda raw: raw["rows"][0].update(step=0), "step numbers must increase"),
        (lambda raw: raw.update(verdict={"oracle": "x"}), "verdict lacks the field 'message'"),
        (lambda raw: raw.update(rows={}), "'rows' must be a list"),
    ],
)
def test_a_broken_timeline_is_einval_with_a_sentence(edit: Any, words: str) -> None:
    with pytest.raises(BadTimeline) as info:
        Timeline.from_json(_broken(edit), "sample.json")
    assert info.value.errno == errno.EINVAL
    assert words in str(info.value)
    assert "sample.json" in str(info.value)


def test_text_that_is_not_json_says_where() -> None:
    with pytest.raises(BadTimeline, match=r"not JSON .* line 1"):
        Timeline.from_json("{", "t.json")
    with pytest.raises(BadTimeline, match="must be a JSON object"):
        Timeline.from_json("[]")


def test_to_json_refuses_a_timeline_that_breaks_the_rules() -> None:
    t = sample_timeline()
    t.rows[5].core = 7
    with pytest.raises(BadTimeline, match="core 7 is outside"):
        t.to_json()


def test_state_changes_lists_added_changed_and_removed_names() -> None:
    before = {"a": "1", "b": "2", "c": "3"}
    after = {"a": "1", "b": "20", "d": "4"}
    assert state_changes(before, after) == [("b", "2", "20"), ("c", "3", ""), ("d", "", "4")]
    assert state_changes(after, after) == []


def test_long_timeline_repeats_the_sample_with_one_failing_step() -> None:
    t = long_timeline(100)
    t.validate()
    assert [r.step for r in t.rows] == list(range(1, 101))
    assert t.failing_steps == [100]
    assert t.rows[22].operation == t.rows[0].operation


def test_each_sample_is_a_fresh_copy() -> None:
    first = sample_timeline()
    first.tasks[0].core = 2
    first.rows[0].state["pm.lock"] = "held"
    first.initial.clear()
    again = sample_timeline()
    assert again.tasks[0].core == 0
    assert again.rows[0].state["pm.lock"] == "free"
    assert again.initial["pm.lock"] == "free"
