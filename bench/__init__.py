"""Benchmarks: `make bench` (python -m bench).  Every figure that can have a
baseline is a ratio against one measured in the same run."""
