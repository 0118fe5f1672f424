"""Benchmarks for socketeer (run the modules as scripts; see docs/benchmarks.md)."""
