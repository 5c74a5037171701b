"""`python -m pagemap.check.report`: render a timeline JSON file (or the sample).

    python -m pagemap.check.report TIMELINE.json            # text, terminal width
    python -m pagemap.check.report TIMELINE.json --width 80
    python -m pagemap.check.report --sample --html out.html  # the page, written

Rules: a bad file or argument prints one line and exits 2; nothing else is written
when the timeline is broken (it is validated before the page is made).
"""

from __future__ import annotations

import argparse
import errno
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from pagemap.check.report.model import Timeline
from pagemap.check.report.sample import sample_timeline
from pagemap.check.report.text import render_text
from pagemap.check.report.timeline import render_html
from pagemap.kernel.errors import KernelError

BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ValueError(message)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(
        prog="python -m pagemap.check.report",
        description="Render a counterexample timeline (JSON) as text, or as an HTML page.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("timeline", nargs="?", metavar="TIMELINE.json")
    source.add_argument("--sample", action="store_true", help="the built-in sample")
    parser.add_argument("--html", metavar="OUT", help="write the page here instead of text")
    parser.add_argument("--width", type=int, help="text width (default: the terminal's)")
    try:
        args = parser.parse_args(argv)
        timeline = (
            sample_timeline()
            if args.sample
            else Timeline.from_json(_read(args.timeline), args.timeline)
        )
        if args.html:
            Path(args.html).write_text(render_html(timeline), encoding="utf-8")
            print(f"timeline written to {args.html}")
            return 0
        width = args.width or shutil.get_terminal_size().columns
        sys.stdout.write(render_text(timeline, width, color=sys.stdout.isatty()))
        return 0
    except (OSError, ValueError) as exc:
        print(f"python -m pagemap.check.report: {_sentence(exc)}", file=sys.stderr)
        return BAD_INPUT


def _sentence(exc: Exception) -> str:
    if isinstance(exc, KernelError) or not isinstance(exc, OSError) or exc.errno is None:
        return str(exc)
    return f"{errno.errorcode.get(exc.errno, exc.errno)}: {exc.strerror}"


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise OSError(exc.errno, f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a timeline: not UTF-8 text") from None


if __name__ == "__main__":
    sys.exit(main())
