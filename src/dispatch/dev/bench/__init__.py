"""Benchmarks, one module per area; each exposes a click `command`."""
