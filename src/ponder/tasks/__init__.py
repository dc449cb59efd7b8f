"""Benchmark loaders and graders."""
