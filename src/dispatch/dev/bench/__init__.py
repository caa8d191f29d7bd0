"""Benchmarks, one module per area; each exposes a click `command`."""

from dispatch.config import Settings, load_settings


def bench_settings(**values) -> Settings:
    """Settings for a bench run: no environment, and no review step (a bench sends the sample
    issue at once; nobody is there to approve it, as in `dispatch demo`)."""
    return load_settings(env={}).replace(review_required=False, **values)
