"""Benchmark of this area (placeholder until its issue lands)."""
