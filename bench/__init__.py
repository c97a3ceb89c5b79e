"""Benchmarks that print ratios against peers and floors (``python -m bench.store``).

Never timed unit tests: machines differ, so the figures live in docs/performance.md with
the machine they came from, and each run compares everything within itself.
"""
