"""Benchmark runs (minimal, in memory; the resumable harness follows)."""
