"""The parts of `pagemap check` and `pagemap replay` (check/command.py, which
registers both commands and runs them): the options (args.py), what every
part says and how (common.py), the modes of check (known.py, mutants.py,
coverage.py), the end of a check (output.py), and what a replay concludes
(replay.py).

Rules: these modules never import check/command.py; it imports them, and
re-exports the names its callers and tests use.
"""
