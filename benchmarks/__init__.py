"""Benchmarks of Pipeline Lab: `python -m benchmarks` (or `make bench`) runs them all."""
