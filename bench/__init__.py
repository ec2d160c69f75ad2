"""Benchmarks: scripts that print figures (`name: value unit`), never timed assertions.

Each runs as `.venv/bin/python -m bench.<script> [--quick]`; BENCHMARKS.md holds the figures.
"""
