"""`dispatch doctor` (is the sending domain ready?) and `dispatch dkim generate` (a key pair)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from dispatch.cli.common import emit, fail, json_option, settings_or_exit
from dispatch.config import ConfigError
from dispatch.i18n import Catalog

MESSAGES = Catalog(
    {
        "summary": ("{domain}：{status}", "{domain}: {status}"),
        "publish": ("发布：", "publish:"),
        "exists": (
            "{path} 已存在；换一个路径，或用 --force 覆盖（旧密钥签过的邮件将无法再验证）",
            "{path} exists; choose another path or pass --force (mail signed with the old key "
            "stops verifying)",
        ),
        "bad_selector": (
            "选择器 {selector!r} 无效：只能用字母、数字和连字符",
            "selector {selector!r} is invalid: letters, digits and hyphens only",
        ),
        "bad_bits": ("RSA 密钥至少 2048 位", "an RSA key needs at least 2048 bits"),
        "written": (
            "私钥已写入 {path}（权限 600，不要提交到 git）",
            "private key written to {path} (mode 600, keep it out of git)",
        ),
        "dns": ("在 DNS 中发布这条 TXT 记录：", "publish this TXT record in DNS:"),
        "settings": ("然后设置：", "then set:"),
    }
)

MARK = {"pass": "✓", "warn": "!", "fail": "✗"}


def register(main: click.Group) -> None:
    main.add_command(doctor)
    main.add_command(dkim_group)


@click.command("doctor")
@json_option
def doctor(as_json: bool) -> None:
    """Check the sending domain: SPF, DKIM, DMARC, bounce MX, relay PTR/TLS, https.

    检查发信域名：SPF、DKIM、DMARC、退信 MX、中继 PTR/TLS、https。退出码 1 表示有失败项。
    """
    from dispatch.deliverability.doctor import MESSAGES as DOCTOR
    from dispatch.deliverability.doctor import run_doctor, save_report

    settings = settings_or_exit()
    try:
        report = run_doctor(settings)
    except ConfigError as exc:
        fail(str(exc))
        return
    try:
        save_report(settings, report)  # what later sends consult
    except OSError:
        pass  # a read-only data_dir: the report is still printed

    def human(_: object) -> None:
        status = DOCTOR.both(f"status.{report.status}")
        click.echo(MESSAGES.both("summary", domain=report.domain, status=status))
        for r in report.results:
            word = f"{DOCTOR.get(f'status.{r.status}', 'zh-CN')} / {r.status}"
            click.echo(f"{MARK[r.status]} {r.label('zh-CN')} / {r.label('en')}: {word}")
            click.echo(f"    {r.reason('zh-CN')}")
            click.echo(f"    {r.reason('en')}")
            if r.record and r.status != "pass":
                click.echo(f"    {MESSAGES.both('publish')} {r.record}")

    emit(report.as_dict(), as_json, human)
    if report.failures:
        raise SystemExit(1)


@click.group("dkim")
def dkim_group() -> None:
    """DKIM keys / DKIM 密钥."""


@dkim_group.command("generate")
@click.option("--selector", required=True, help="DNS selector, e.g. bulletin2026 / 选择器")
@click.option("--domain", default=None, help="signing domain (default: the From domain) / 签名域")
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="where to write the private key (outside git) / 私钥写入路径",
)
@click.option(
    "--type",
    "key_type",
    type=click.Choice(["rsa", "ed25519"]),
    default="rsa",
    show_default=True,
    help="ed25519: a second key beside the RSA one (RFC 8463) / 第二把密钥",
)
@click.option("--bits", type=int, default=2048, show_default=True, help="RSA key size / 位数")
@click.option("--force", is_flag=True, help="overwrite an existing key file / 覆盖已有文件")
@json_option
def dkim_generate(
    selector: str,
    domain: str | None,
    key_file: Path,
    key_type: str,
    bits: int,
    force: bool,
    as_json: bool,
) -> None:
    """Make an RSA key pair and print the DNS record to publish.

    生成 RSA 密钥对并打印要发布的 DNS 记录。
    """
    import re

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    from dispatch.channels.dkim import MIN_RSA_BITS, public_key_record

    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?", selector):
        fail(MESSAGES.both("bad_selector", selector=selector))
    if key_type == "rsa" and bits < MIN_RSA_BITS:
        fail(MESSAGES.both("bad_bits"))
    if key_file.exists() and not force:
        fail(MESSAGES.both("exists", path=key_file))
    settings = settings_or_exit()
    domain = (domain or settings.from_address.rpartition("@")[2]).lower()
    key = (
        ed25519.Ed25519PrivateKey.generate()
        if key_type == "ed25519"
        else rsa.generate_private_key(public_exponent=65537, key_size=bits)
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = key_file.with_name(key_file.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    tmp.replace(key_file)
    value = public_key_record(key)
    name = f"{selector}._domainkey.{domain}"
    # zone files split TXT values into strings of at most 255 characters
    chunks = " ".join(f'"{value[i : i + 255]}"' for i in range(0, len(value), 255))
    data = {
        "key_file": str(key_file),
        "selector": selector,
        "domain": domain,
        "type": key_type,
        "bits": bits if key_type == "rsa" else 256,
        "name": name,
        "txt": value,
        "zone_line": f"{name}. IN TXT ( {chunks} )",
        "settings": (
            {"dkim_ed25519_selector": selector, "dkim_ed25519_key_file": str(key_file)}
            if key_type == "ed25519"
            else {
                "dkim_selector": selector,
                "dkim_domain": domain,
                "dkim_key_file": str(key_file),
            }
        ),
    }

    def human(_: object) -> None:
        click.echo(MESSAGES.both("written", path=key_file))
        click.echo(MESSAGES.both("dns"))
        click.echo(f"  {data['zone_line']}")
        click.echo(MESSAGES.both("settings"))
        for k, v in data["settings"].items():
            click.echo(f'  {k} = "{v}"')

    emit(data, as_json, human)
