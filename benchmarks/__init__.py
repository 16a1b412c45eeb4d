"""Benchmarks of mpilearn: `python -m benchmarks NAME` (see __main__.py and docs/benchmarks.md)."""
