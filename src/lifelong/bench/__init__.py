"""Benchmarks: one module per claim, each run by ``lifelong bench NAME``."""
