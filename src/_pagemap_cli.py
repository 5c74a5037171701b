"""The `pagemap` console script's entry point: Ctrl-C at any moment is exit 130.

Importing pagemap takes about half a second (the whole kernel, rich, jsonschema),
and a Ctrl-C in that time would end in a KeyboardInterrupt traceback, since
pagemap.cli's own handler is not there yet.  This module lives outside the
package because importing anything inside it runs the package's __init__ first:
here nothing heavy is imported before the handler is in place.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it


def main(argv: Sequence[str] | None = None) -> int:
    try:
        from pagemap.cli import main as pagemap

        return pagemap(argv)
    except KeyboardInterrupt:
        # While importing, or parsing arguments: pagemap.cli handles it after that.
        print("pagemap: interrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
