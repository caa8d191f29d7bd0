"""The `dispatch` command. Each area registers its commands from its own module."""

from __future__ import annotations

import importlib
import sys

import click

from dispatch import __version__

COMMAND_MODULES = (
    "dispatch.cli.db_cmd",
    "dispatch.cli.render_cmd",
    "dispatch.cli.docx_cmd",  # issues import-docx (after render_cmd, which makes `issues`)
    "dispatch.cli.demo",
    "dispatch.cli.bench",
    "dispatch.cli.lists",
    "dispatch.cli.subscribers",
    "dispatch.cli.campaigns",
    "dispatch.cli.sending",
    "dispatch.cli.wechat",
    "dispatch.cli.web",
    "dispatch.cli.doctor",
    "dispatch.cli.bounces",
    "dispatch.cli.events_cmd",
)


USAGE_HINT = "用 {command} -h 查看用法 / see {command} -h for usage"


class BilingualGroup(click.Group):
    """Click's own errors (a missing option, a bad value, an aborted prompt) in the same
    "error: …" form as dispatch's, with the Chinese beside the English like every CLI error."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):  # type: ignore[override]
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.Abort:
            click.echo("error: 已中止 / aborted", err=True)
            sys.exit(1)
        except click.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx is not None else "dispatch"
            click.echo(f"error: 用法错误 / usage: {exc.format_message()}", err=True)
            click.echo(USAGE_HINT.format(command=command), err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=BilingualGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dispatch")
def main() -> None:
    """dispatch: deliver a published newsletter issue by email and WeChat.

    dispatch：通过电子邮件和微信公众号投递已发布的简报，逐个收件人跟踪与重试。
    """


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(main)
