"""`dispatch bench …`: benchmark commands that print figures (never timed tests).

Each area keeps its benchmark in dispatch/dev/bench/<area>.py exposing a click command `command`.
"""

from __future__ import annotations

import importlib

import click

BENCH_MODULES = (
    "render",
    "importing",
    "send",
    "sendcpu",
    "fanout",
    "web",
    "wechat_sync",
    "bounces",
    "tracking",
    "admin",
    "report",
    "recovery",
)


@click.group("bench")
def bench_group() -> None:
    """Benchmarks that print figures / 性能基准."""


def register(main: click.Group) -> None:
    for name in BENCH_MODULES:
        module = importlib.import_module(f"dispatch.dev.bench.{name}")
        command = getattr(module, "command", None)
        if command is not None:
            bench_group.add_command(command)
    main.add_command(bench_group)
