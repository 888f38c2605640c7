"""Benchmarks of triplicate against peers (xxhsum, cp, rclone) measured in the
same run on the same data; every figure is printed as a ratio. Not tests: run
with `make bench` or `.venv/bin/python -m bench` (see RESULTS.md)."""
