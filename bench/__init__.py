"""Benchmarks: each compares a subject with a baseline measured in the same run, reported as a ratio."""
