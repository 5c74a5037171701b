"""Counterexample reports: a Timeline of one schedule, for a browser or a terminal.

`Timeline` (model.py) is the data; `render_html` (timeline.py) makes one
self-contained page of it, `render_text` (text.py) a rich rendering for a
terminal of a given width.  Nothing here runs a schedule: whoever replays one
builds the Timeline.
"""

from pagemap.check.report.model import (
    TIMELINE_VERSION,
    BadTimeline,
    Row,
    TaskInfo,
    Timeline,
    Verdict,
    state_changes,
)
from pagemap.check.report.sample import long_timeline, sample_timeline
from pagemap.check.report.timeline import render_html

__all__ = [
    "TIMELINE_VERSION",
    "BadTimeline",
    "Row",
    "TaskInfo",
    "Timeline",
    "Verdict",
    "long_timeline",
    "render_html",
    "sample_timeline",
    "state_changes",
]
