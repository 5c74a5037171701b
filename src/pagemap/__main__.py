"""`python -m pagemap`: the `pagemap` command, for when the script is not on PATH."""

import sys

from pagemap.cli import main

sys.exit(main())
