"""The `dispatch` command. Each area registers its commands from its own module."""

from __future__ import annotations

import importlib

import click

from dispatch import __version__

COMMAND_MODULES = (
    "dispatch.cli.db_cmd",
    "dispatch.cli.render_cmd",
    "dispatch.cli.demo",
    "dispatch.cli.bench",
    "dispatch.cli.lists",
    "dispatch.cli.subscribers",
    "dispatch.cli.campaigns",
    "dispatch.cli.wechat",
    "dispatch.cli.web",
    "dispatch.cli.doctor",
    "dispatch.cli.bounces",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dispatch")
def main() -> None:
    """dispatch: deliver a published newsletter issue by email and WeChat.

    dispatch：通过电子邮件和微信公众号投递已发布的简报，逐个收件人跟踪与重试。
    """


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(main)
