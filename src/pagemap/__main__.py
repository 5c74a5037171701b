"""`python -m pagemap`: the `pagemap` command, for when the script is not on PATH.

Through the console script's entry point, so that a Ctrl-C while pagemap.cli is
imported is exit 130 here too (the package's __init__ has run by now: a Ctrl-C
during it is Python's own traceback, which only the console script avoids)."""

import sys

from _pagemap_cli import main

sys.exit(main())
