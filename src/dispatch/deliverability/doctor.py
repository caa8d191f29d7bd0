"""`dispatch doctor`: is the sending domain ready for bulk mail? One check per requirement.

What receivers demand of bulk senders since 2024 (Gmail, Yahoo; Outlook.com since 2025):
SPF and DKIM that pass, a DMARC record, alignment of at least one of them with the From
domain, forward-confirmed reverse DNS and TLS on the sending host, one-click unsubscribe.
Each check here answers pass, warn or fail with the reason and, where DNS is the fix, the
exact record to publish, in Chinese and English. Nothing here raises: a broken record or a
DNS server that does not answer is a finding, never a crash.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from dispatch.config import Settings
from dispatch.deliverability.dns import LookupFailed, Resolver, is_ip
from dispatch.deliverability.records import (
    MAX_SPF_LOOKUPS,
    RecordError,
    aligned,
    dmarc_records,
    organizational_domain,
    parse_dkim_key,
    parse_dmarc,
    parse_spf,
    spf_check_host,
    spf_records,
    walk_spf,
)
from dispatch.i18n import Catalog
from dispatch.vocabulary import CheckStatus

STATUSES = tuple(CheckStatus)
PASS, WARN, FAIL = CheckStatus.PASS, CheckStatus.WARN, CheckStatus.FAIL

MESSAGES = Catalog(
    {
        # labels
        "label.spf": ("SPF 记录", "SPF record"),
        "label.dkim": ("DKIM 密钥", "DKIM key"),
        "label.dmarc": ("DMARC 策略", "DMARC policy"),
        "label.bounce_mx": ("退信域名 MX", "Bounce domain MX"),
        "label.relay_ptr": ("中继反向解析（PTR）", "Relay reverse DNS (PTR)"),
        "label.relay_tls": ("中继 TLS", "Relay TLS"),
        "label.public_url": ("公开网址 https", "Public URL over https"),
        "label.unsubscribe": ("一键退订（List-Unsubscribe）", "One-click unsubscribe"),
        "label.postal_address": ("页脚邮寄地址", "Postal address in the footer"),
        "status.pass": ("通过", "pass"),
        "status.warn": ("注意", "warn"),
        "status.fail": ("失败", "fail"),
        # DNS failures, shared
        "dns.timeout": (
            "DNS 服务器在 {seconds} 秒内没有回答 {rtype} {name}（稍后重试，或检查 "
            "dns_nameservers）",
            "the DNS server did not answer {rtype} {name} within {seconds} s (retry later, or "
            "check dns_nameservers)",
        ),
        "dns.error": (
            "查询 {rtype} {name} 失败：{detail}",
            "looking up {rtype} {name} failed: {detail}",
        ),
        # SPF
        "spf.none": ("{domain} 没有 SPF 记录", "{domain} has no SPF record"),
        "spf.many": (
            "{domain} 有 {count} 条 SPF 记录，RFC 7208 只允许一条（收件方视为 permerror）："
            "合并为一条",
            "{domain} has {count} SPF records; RFC 7208 allows one (receivers treat it as a "
            "permerror): merge them",
        ),
        "spf.syntax": ("SPF 语法错误：{error}", "SPF syntax error: {error}"),
        "spf.lookups": (
            "SPF 需要 {count} 次 DNS 查询（经 include 展开），超过 RFC 7208 的上限 {limit}："
            "收件方视为 permerror；减少 include 或改用 ip4/ip6",
            "SPF needs {count} DNS lookups (through its includes), over RFC 7208's limit of "
            "{limit}: receivers treat it as a permerror; drop includes or use ip4/ip6",
        ),
        "spf.include_broken": (
            "SPF 引用的记录有问题：{problem}",
            "an SPF include is broken: {problem}",
        ),
        "spf.plus_all": (
            "SPF 以 +all 结尾，等于授权全世界冒充本域名",
            "SPF ends in +all, which authorises the whole world to send as this domain",
        ),
        "spf.no_relay_include": (
            "SPF 没有包含中继的 include:{include}",
            "SPF does not include the relay's include:{include}",
        ),
        "spf.relay_not_authorised": (
            "SPF 没有授权中继 {host}（{address}）：check_host 结果为 {result}",
            "SPF does not authorise the relay {host} ({address}): check_host gives {result}",
        ),
        "spf.soft": (
            "SPF 有效（{lookups} 次查询），但以 {all} 结尾：确认无误后改为 -all",
            "SPF is valid ({lookups} lookups) but ends in {all}: change it to -all once "
            "everything sends through it",
        ),
        "spf.no_relay": (
            "SPF 有效（{lookups} 次查询）；未配置中继（smtp_url），无法检查它是否被授权",
            "SPF is valid ({lookups} lookups); no relay is configured (smtp_url), so whether it "
            "is authorised is not checked",
        ),
        "spf.ok": (
            "SPF 有效（{lookups} 次查询），授权了中继 {relay}",
            "SPF is valid ({lookups} lookups) and authorises the relay {relay}",
        ),
        # DKIM
        "dkim.unconfigured": (
            "未配置 DKIM（dkim_selector、dkim_domain、dkim_key_file）：运行 dispatch dkim generate",
            "DKIM is not configured (dkim_selector, dkim_domain, dkim_key_file): run dispatch "
            "dkim generate",
        ),
        "dkim.config": ("DKIM 配置有误：{error}", "DKIM configuration problem: {error}"),
        "dkim.none": (
            "{name} 没有发布 DKIM 公钥",
            "no DKIM public key is published at {name}",
        ),
        "dkim.bad_record": (
            "{name} 的 DKIM 记录无效：{error}",
            "the DKIM record at {name} is invalid: {error}",
        ),
        "dkim.weak": (
            "发布的 RSA 公钥只有 {bits} 位，至少需要 2048 位",
            "the published RSA key has {bits} bits; at least 2048 are needed",
        ),
        "dkim.mismatch": (
            "{name} 发布的公钥与 dispatch 签名用的私钥不匹配（换过密钥却没更新 DNS？）",
            "the key published at {name} does not match the private key dispatch signs with (key "
            "rotated without updating DNS?)",
        ),
        "dkim.verify_failed": (
            "用发布的公钥验证测试邮件失败：{error}",
            "a test message signed by dispatch does not verify against the published key: {error}",
        ),
        "dkim.testing": (
            "DKIM 记录带 t=y（测试模式），收件方可能忽略签名",
            "the DKIM record carries t=y (testing): receivers may ignore the signature",
        ),
        "dkim.ok": (
            "{name} 发布了 {bits} 位 RSA 公钥，测试邮件签名验证通过，d={domain} 与发件域对齐",
            "{name} publishes a {bits}-bit RSA key, a test message verifies against it, "
            "d={domain} aligns with the From domain",
        ),
        # DMARC
        "dmarc.none": ("{domain} 没有 DMARC 记录", "{domain} has no DMARC record"),
        "dmarc.many": (
            "{name} 有 {count} 条 DMARC 记录（RFC 7489：视为没有）",
            "{name} has {count} DMARC records (RFC 7489: treated as none)",
        ),
        "dmarc.syntax": ("DMARC 语法错误：{error}", "DMARC syntax error: {error}"),
        "dmarc.strict_dkim": (
            "DMARC 要求 adkim=s（严格），但 DKIM 签名域 {dkim} 不等于发件域 {domain}",
            "DMARC asks adkim=s (strict) but the DKIM domain {dkim} is not the From domain "
            "{domain}",
        ),
        "dmarc.p_none": (
            "DMARC p=none 只监控不保护；查看报告确认无误后改为 p=quarantine",
            "DMARC p=none only monitors; after reading the reports, move to p=quarantine",
        ),
        "dmarc.no_rua": (
            "DMARC 没有 rua= 报告地址，看不到谁在以本域名发信",
            "DMARC has no rua= report address, so nobody sees who sends as this domain",
        ),
        "dmarc.ok": (
            "DMARC p={policy}，对齐方式 adkim={adkim}",
            "DMARC p={policy}, alignment adkim={adkim}",
        ),
        # bounce MX
        "mx.none": (
            "退信域名 {domain} 没有 MX 记录，退信无处投递",
            "the bounce domain {domain} has no MX record, so bounces cannot arrive",
        ),
        "mx.unresolved": (
            "MX 主机 {host} 没有地址记录",
            "the MX host {host} has no address record",
        ),
        "mx.elsewhere": (
            "{domain} 的 MX 指向 {hosts}，不是退信接收主机 {expected}",
            "{domain}'s MX names {hosts}, not the bounce intake {expected}",
        ),
        "mx.ok": ("{domain} 的 MX：{hosts}", "{domain} MX: {hosts}"),
        # relay
        "relay.none": (
            "未配置中继（smtp_url 为空，写入本地发件箱），不探测",
            "no relay is configured (smtp_url empty: local outbox), not probed",
        ),
        "relay.bad_url": ("smtp_url 无效：{error}", "smtp_url is invalid: {error}"),
        "ptr.none": (
            "中继地址 {address} 没有反向解析（PTR）；Gmail 要求发信 IP 有一致的正反向解析",
            "the relay address {address} has no reverse DNS (PTR); Gmail requires "
            "forward-confirmed reverse DNS for sending IPs",
        ),
        "ptr.loopback": (
            "中继在本机（{address}）：起作用的是它对外发信的公网 IP 的 PTR，这里无法探测",
            "the relay is on this host ({address}): what counts is the PTR of the public IP it "
            "sends from, not probed here",
        ),
        "ptr.mismatch": (
            "{address} 的 PTR 是 {names}，但这些名字不解析回 {address}",
            "{address} has PTR {names}, but those names do not resolve back to {address}",
        ),
        "ptr.ok": (
            "{address} 的 PTR {name} 正反向一致",
            "{address} PTR {name} is forward-confirmed",
        ),
        "ptr.unresolved": ("无法解析中继主机 {host}", "cannot resolve the relay host {host}"),
        "tls.unreachable": (
            "无法连接中继 {host}:{port} 探测 TLS：{error}",
            "cannot reach the relay {host}:{port} to probe TLS: {error}",
        ),
        "tls.plain_offered": (
            "中继支持 STARTTLS，但 smtp_url 没有启用：加上 ?starttls=1",
            "the relay offers STARTTLS but smtp_url does not use it: add ?starttls=1",
        ),
        "tls.plain": (
            "与中继的连接不加密（不支持 STARTTLS）：密码和邮件以明文传输",
            "the connection to the relay is not encrypted (no STARTTLS): password and mail travel "
            "in clear",
        ),
        "tls.bad": (
            "与中继的 TLS 握手失败：{error}",
            "the TLS handshake with the relay failed: {error}",
        ),
        "tls.ok": (
            "中继使用 {version}，证书验证通过",
            "the relay speaks {version} with a certificate that verifies",
        ),
        # public URL
        "url.http": (
            "public_base_url 是 {url}：退订和一键退订链接必须是 https（RFC 8058）",
            "public_base_url is {url}: unsubscribe and one-click links must be https (RFC 8058)",
        ),
        "url.ok": ("public_base_url 使用 https", "public_base_url uses https"),
        # content
        "unsub.no_mailto": (
            "只有 https 退订；设置 unsubscribe_mailto 以便邮件客户端也能用 mailto 退订",
            "unsubscribe is https only; set unsubscribe_mailto so mail clients can also "
            "unsubscribe by mailto",
        ),
        "unsub.ok": (
            "每封邮件带 List-Unsubscribe（https 与 mailto）和 One-Click",
            "every message carries List-Unsubscribe (https and mailto) with One-Click",
        ),
        "postal.none": (
            "未设置 postal_address：批量邮件页脚应写明发件单位的邮寄地址",
            "postal_address is not set: a bulk message's footer should give the sender's postal "
            "address",
        ),
        "postal.ok": ("页脚写明邮寄地址", "the footer gives the postal address"),
    }
)


@dataclass(frozen=True)
class CheckResult:
    """One finding: a check id, pass/warn/fail, the reason (a catalog key) and the fix."""

    check: str
    status: str
    key: str
    params: dict[str, Any] = field(default_factory=dict)
    record: str | None = None  # the exact DNS record (or setting) to publish

    def reason(self, locale: str | None = None) -> str:
        text = MESSAGES.get(self.key, locale, **self.params)
        relay = self.params.get("relay")
        return f"[{relay}] {text}" if relay else text

    def label(self, locale: str | None = None) -> str:
        return MESSAGES.get(f"label.{self.check}", locale)

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "status": self.status,
            "label": {"zh-CN": self.label("zh-CN"), "en": self.label("en")},
            "reason": {"zh-CN": self.reason("zh-CN"), "en": self.reason("en")},
            "record": self.record,
        }


@dataclass
class DoctorReport:
    domain: str
    results: list[CheckResult]

    @property
    def status(self) -> str:
        statuses = {r.status for r in self.results}
        return FAIL if FAIL in statuses else WARN if WARN in statuses else PASS

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == FAIL]

    def get(self, check: str) -> CheckResult:
        return next(r for r in self.results if r.check == check)

    def as_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "status": self.status,
            "checks": [r.as_dict() for r in self.results],
        }


def _dns_failure(check: str, exc: LookupFailed, record: str | None = None) -> CheckResult:
    if exc.kind == "timeout":
        return CheckResult(
            check,
            FAIL,
            "dns.timeout",
            {"rtype": exc.rtype, "name": exc.name, "seconds": f"{exc.seconds:g}"},
            record,
        )
    return CheckResult(
        check,
        FAIL,
        "dns.error",
        {"rtype": exc.rtype, "name": exc.name, "detail": exc.detail or exc.kind},
        record,
    )


def from_domain(settings: Settings) -> str:
    return settings.from_address.rpartition("@")[2].lower()


def bounce_domain(settings: Settings) -> str:
    """Where bounces go: the domain of the VERP bounce address when set, else the From domain."""
    bounce_address = str(getattr(settings, "bounce_address", "") or "")
    return (bounce_address.rpartition("@")[2] or from_domain(settings)).lower()


@dataclass
class _Relay:
    """One relay to probe: smtp_url's, or each of the `relays` (dispatch.delivery.relays)."""

    name: str
    host: str
    port: int
    addresses: list[str]
    endpoint: Any  # security, ssl_context()


@dataclass
class _Endpoint:
    security: str
    context: Any

    def ssl_context(self):
        return self.context()


def _relays(settings: Settings, resolver: Resolver) -> list[_Relay] | CheckResult:
    """The relays mail leaves through ([] for the local outbox), with their addresses."""
    from dispatch.config import ConfigError

    try:
        from dispatch.delivery.relays import parse_relays

        configured = [r for r in parse_relays(settings) if r.host]
    except ConfigError as exc:
        return CheckResult("relay", FAIL, "relay.bad_url", {"error": str(exc)})
    relays = []
    for relay in configured:
        if is_ip(relay.host):
            addresses = [relay.host]
        else:
            try:
                addresses = resolver.addresses(relay.host)
            except LookupFailed:
                addresses = []
            if not addresses:
                try:
                    addresses = sorted({i[4][0] for i in socket.getaddrinfo(relay.host, None)})
                except OSError:
                    addresses = []
        endpoint = _Endpoint(relay.security, relay.ssl_context)
        relays.append(_Relay(relay.name, relay.host, relay.port, addresses, endpoint))
    return relays


# -------------------------------------------------------------------------------------- checks


def check_spf(settings: Settings, resolver: Resolver, relays: list[_Relay]) -> CheckResult:
    domain = from_domain(settings)
    addresses = [(r, a) for r in relays for a in r.addresses]
    if settings.relay_spf_include:
        mechanism = f"include:{settings.relay_spf_include}"
    elif addresses:
        mechanism = " ".join(
            dict.fromkeys(f"{'ip6' if ':' in a else 'ip4'}:{a}" for _, a in addresses)
        )
    else:
        mechanism = "mx"
    suggested = f'{domain}. IN TXT "v=spf1 {mechanism} -all"'
    try:
        records = spf_records(resolver.txt_or_empty(domain))
    except LookupFailed as exc:
        return _dns_failure("spf", exc, suggested)
    if not records:
        return CheckResult("spf", FAIL, "spf.none", {"domain": domain}, suggested)
    if len(records) > 1:
        return CheckResult(
            "spf", FAIL, "spf.many", {"domain": domain, "count": len(records)}, suggested
        )
    try:
        terms = parse_spf(records[0])
    except RecordError as exc:
        return CheckResult("spf", FAIL, "spf.syntax", {"error": str(exc)}, suggested)
    try:
        walk = walk_spf(resolver, domain)
    except LookupFailed as exc:
        return _dns_failure("spf", exc, suggested)
    if walk.lookups > MAX_SPF_LOOKUPS:
        return CheckResult(
            "spf",
            FAIL,
            "spf.lookups",
            {"count": walk.lookups, "limit": MAX_SPF_LOOKUPS},
            suggested,
        )
    if walk.problems:
        return CheckResult(
            "spf", FAIL, "spf.include_broken", {"problem": walk.problems[0]}, suggested
        )
    all_term = next((t for t in terms if t.name == "all"), None)
    if all_term is not None and all_term.qualifier == "+":
        return CheckResult("spf", FAIL, "spf.plus_all", {}, suggested)
    # does it authorise the relay?
    with_mechanism = _spf_with(records[0], mechanism)
    if settings.relay_spf_include:
        if settings.relay_spf_include.lower().rstrip(".") not in walk.includes:
            return CheckResult(
                "spf",
                FAIL,
                "spf.no_relay_include",
                {"include": settings.relay_spf_include},
                with_mechanism,
            )
        relay_text = f"include:{settings.relay_spf_include}"
    elif addresses:
        for relay, address in addresses:
            result = spf_check_host(resolver, address, domain)
            if result != "pass":
                return CheckResult(
                    "spf",
                    FAIL,
                    "spf.relay_not_authorised",
                    {"host": relay.host, "address": address, "result": result},
                    with_mechanism,
                )
        relay_text = ", ".join(dict.fromkeys(r.host for r in relays))
    else:
        return CheckResult("spf", WARN, "spf.no_relay", {"lookups": walk.lookups}, None)
    if all_term is None or all_term.qualifier in ("~", "?"):
        all_text = (all_term.qualifier + "all") if all_term else "(no all)"
        return CheckResult(
            "spf", WARN, "spf.soft", {"lookups": walk.lookups, "all": all_text}, None
        )
    return CheckResult("spf", PASS, "spf.ok", {"lookups": walk.lookups, "relay": relay_text})


def _spf_with(record: str, mechanism: str) -> str:
    """The published record with `mechanism` added before its all term (or before the end)."""
    parts = record.split()
    if mechanism in parts:
        return record
    index = next((i for i, p in enumerate(parts) if p.lstrip("+-~?").lower() == "all"), len(parts))
    parts.insert(max(index, 1), mechanism)
    return " ".join(parts)


def check_dkim(settings: Settings, resolver: Resolver) -> CheckResult:
    from dispatch.channels.dkim import (
        DkimConfigError,
        check_private_key,
        public_key_record,
        signer_from_settings,
    )

    if not (settings.dkim_key_file or settings.dkim_selector or settings.dkim_domain):
        return CheckResult("dkim", FAIL, "dkim.unconfigured", {}, None)
    try:
        signer = signer_from_settings(settings)
    except DkimConfigError as exc:
        return CheckResult("dkim", FAIL, "dkim.config", {"error": str(exc)})
    assert signer is not None
    private = check_private_key(signer.private_key, settings.dkim_key_file)
    name = f"{signer.selector}._domainkey.{signer.domain}"
    wanted = public_key_record(private)
    record = f'{name}. IN TXT "{wanted}"'
    try:
        txts = resolver.txt_or_empty(name)
    except LookupFailed as exc:
        return _dns_failure("dkim", exc, record)
    txts = [t for t in txts if "p=" in t]
    if not txts:
        return CheckResult("dkim", FAIL, "dkim.none", {"name": name}, record)
    try:
        published = parse_dkim_key(txts[0])
    except RecordError as exc:
        return CheckResult(
            "dkim", FAIL, "dkim.bad_record", {"name": name, "error": str(exc)}, record
        )
    if published.key_type == "rsa" and published.bits < 2048:
        return CheckResult("dkim", FAIL, "dkim.weak", {"bits": published.bits}, record)
    if _key_of(wanted) != _key_of(txts[0]):
        return CheckResult("dkim", FAIL, "dkim.mismatch", {"name": name}, record)
    if signer.ed25519_seed:  # the RFC 8463 key beside it must be published and match too
        import base64

        from cryptography.hazmat.primitives.asymmetric import ed25519

        seed = base64.b64decode(signer.ed25519_seed)
        ed_wanted = public_key_record(ed25519.Ed25519PrivateKey.from_private_bytes(seed))
        ed_name = f"{signer.ed25519_selector}._domainkey.{signer.domain}"
        ed_record = f'{ed_name}. IN TXT "{ed_wanted}"'
        try:
            ed_txts = [t for t in resolver.txt_or_empty(ed_name) if "p=" in t]
        except LookupFailed as exc:
            return _dns_failure("dkim", exc, ed_record)
        if not ed_txts:
            return CheckResult("dkim", FAIL, "dkim.none", {"name": ed_name}, ed_record)
        try:
            parse_dkim_key(ed_txts[0])
        except RecordError as exc:
            return CheckResult(
                "dkim", FAIL, "dkim.bad_record", {"name": ed_name, "error": str(exc)}, ed_record
            )
        if _key_of(ed_wanted) != _key_of(ed_txts[0]):
            return CheckResult("dkim", FAIL, "dkim.mismatch", {"name": ed_name}, ed_record)
    error = _verify_test_message(settings, signer, resolver)
    if error:
        return CheckResult("dkim", FAIL, "dkim.verify_failed", {"error": error}, record)
    if "y" in published.tags.get("t", "").split(":"):
        return CheckResult("dkim", WARN, "dkim.testing", {}, record)
    return CheckResult(
        "dkim", PASS, "dkim.ok", {"name": name, "bits": published.bits, "domain": signer.domain}
    )


def _verify_test_message(settings: Settings, signer, resolver: Resolver) -> str | None:
    """Sign a small message as campaigns are signed and verify it with the DNS answer."""
    import dkim

    from dispatch.channels.email_message import build_template

    template = build_template(
        campaign_id=0,
        subject="dispatch doctor DKIM test",
        from_address=settings.from_address,
        from_name="dispatch doctor",
        list_id=settings.list_id or "doctor.invalid",
    )
    message = template.fill(
        delivery_id=0,
        to_address=settings.from_address,
        to_name="",
        unsubscribe_url=settings.public_base_url.rstrip("/") + "/u/doctor",
        html="<p>dispatch doctor</p>",
        text="dispatch doctor",
    )
    signed = signer.sign(message)
    count = signed.count(b"\nDKIM-Signature:") + signed.startswith(b"DKIM-Signature:")

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        try:
            return "".join(resolver.txt(name.decode().rstrip("."))).encode()
        except LookupFailed:
            return None

    for index in range(count):  # each signature (RSA, and Ed25519 beside it) on its own
        try:
            if not dkim.DKIM(signed).verify(idx=index, dnsfunc=dnsfunc):
                return f"signature {index + 1} of {count} does not verify"
        except dkim.DKIMException as exc:
            return str(exc)
    return None


def _key_of(record: str) -> str:
    """The p= value of a DKIM record, whitespace removed (how it compares)."""
    for part in record.split(";"):
        key, _, value = part.strip().partition("=")
        if key.strip() == "p":
            return "".join(value.split())
    return ""


def check_dmarc(settings: Settings, resolver: Resolver) -> CheckResult:
    domain = from_domain(settings)
    name = f"_dmarc.{domain}"
    record = (
        f'{name}. IN TXT "v=DMARC1; p=quarantine; '
        f'rua=mailto:dmarc-reports@{domain}; adkim=r; aspf=r"'
    )
    try:
        records = dmarc_records(resolver.txt_or_empty(name))
        org = organizational_domain(domain)
        if not records and org != domain:  # RFC 7489 6.6.3: fall back to the org domain
            name = f"_dmarc.{org}"
            records = dmarc_records(resolver.txt_or_empty(name))
    except LookupFailed as exc:
        return _dns_failure("dmarc", exc, record)
    if not records:
        # a record that starts like DMARC but is broken is a syntax error, not a missing one
        try:
            near = [t for t in resolver.txt_or_empty(name) if "dmarc" in t.lower()]
        except LookupFailed:
            near = []
        if near:
            try:
                parse_dmarc(near[0])
            except RecordError as exc:
                return CheckResult("dmarc", FAIL, "dmarc.syntax", {"error": str(exc)}, record)
        return CheckResult("dmarc", FAIL, "dmarc.none", {"domain": domain}, record)
    if len(records) > 1:
        return CheckResult(
            "dmarc", FAIL, "dmarc.many", {"name": name, "count": len(records)}, record
        )
    try:
        tags = parse_dmarc(records[0])
    except RecordError as exc:
        return CheckResult("dmarc", FAIL, "dmarc.syntax", {"error": str(exc)}, record)
    adkim = tags.get("adkim", "r")
    if settings.dkim_domain and not aligned(settings.dkim_domain, domain, adkim):
        return CheckResult(
            "dmarc",
            FAIL,
            "dmarc.strict_dkim",
            {"dkim": settings.dkim_domain, "domain": domain},
            record,
        )
    if tags["p"] == "none":
        return CheckResult("dmarc", WARN, "dmarc.p_none", {}, record)
    if not tags.get("rua"):
        return CheckResult("dmarc", WARN, "dmarc.no_rua", {}, record)
    return CheckResult("dmarc", PASS, "dmarc.ok", {"policy": tags["p"], "adkim": adkim})


def check_bounce_mx(settings: Settings, resolver: Resolver) -> CheckResult:
    domain = bounce_domain(settings)
    expected = [
        h.strip().lower().rstrip(".") for h in settings.bounce_mx_hosts.split(",") if h.strip()
    ]
    record = f"{domain}. IN MX 10 {(expected or ['mx.' + domain])[0]}."
    try:
        hosts = [h.lower() for _, h in resolver.mx(domain)]
    except LookupFailed as exc:
        if exc.kind in ("nxdomain", "nodata"):
            return CheckResult("bounce_mx", FAIL, "mx.none", {"domain": domain}, record)
        return _dns_failure("bounce_mx", exc, record)
    if hosts == [""] or hosts == ["."]:  # null MX (RFC 7505): accepts no mail
        return CheckResult("bounce_mx", FAIL, "mx.none", {"domain": domain}, record)
    if expected and not set(hosts) & set(expected):
        return CheckResult(
            "bounce_mx",
            FAIL,
            "mx.elsewhere",
            {"domain": domain, "hosts": ", ".join(hosts), "expected": ", ".join(expected)},
            record,
        )
    for host in hosts:
        try:
            if not resolver.addresses(host):
                return CheckResult("bounce_mx", FAIL, "mx.unresolved", {"host": host}, record)
        except LookupFailed as exc:
            return _dns_failure("bounce_mx", exc, record)
    return CheckResult("bounce_mx", PASS, "mx.ok", {"domain": domain, "hosts": ", ".join(hosts)})


def check_relay_ptr(relay: _Relay, resolver: Resolver) -> CheckResult:
    if not relay.addresses:
        return CheckResult("relay_ptr", FAIL, "ptr.unresolved", {"host": relay.host})
    address = relay.addresses[0]
    import ipaddress

    loopback = ipaddress.ip_address(address).is_loopback
    reverse = (
        ".".join(reversed(address.split("."))) + ".in-addr.arpa" if "." in address else address
    )
    record = f"{reverse}. IN PTR {relay.host if not is_ip(relay.host) else 'mail.example.org'}."
    try:
        names = resolver.ptr(address)
    except LookupFailed as exc:
        if exc.kind in ("nxdomain", "nodata"):
            if loopback:
                return CheckResult("relay_ptr", WARN, "ptr.loopback", {"address": address})
            return CheckResult("relay_ptr", FAIL, "ptr.none", {"address": address}, record)
        return _dns_failure("relay_ptr", exc, record)
    for name in names:
        try:
            if address in resolver.addresses(name):
                return CheckResult("relay_ptr", PASS, "ptr.ok", {"address": address, "name": name})
        except LookupFailed as exc:
            if exc.kind == "timeout":
                return _dns_failure("relay_ptr", exc, record)
    return CheckResult(
        "relay_ptr", FAIL, "ptr.mismatch", {"address": address, "names": ", ".join(names)}, record
    )


def check_relay_tls(settings: Settings, relay: _Relay) -> CheckResult:
    endpoint = relay.endpoint
    timeout = min(settings.smtp_timeout, 10.0)
    fix = f'smtp_url = "smtp://{relay.host}:587?starttls=1"'
    try:
        if endpoint.security == "tls":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                relay.host, relay.port, timeout=timeout, context=endpoint.ssl_context()
            )
        else:
            client = smtplib.SMTP(relay.host, relay.port, timeout=timeout)
    except ssl.SSLError as exc:
        return CheckResult("relay_tls", FAIL, "tls.bad", {"error": _ssl_text(exc)}, fix)
    except (OSError, smtplib.SMTPException) as exc:
        return CheckResult(
            "relay_tls",
            WARN,
            "tls.unreachable",
            {"host": relay.host, "port": relay.port, "error": str(exc)},
        )
    try:
        client.ehlo()
        if endpoint.security == "plain":
            if client.has_extn("starttls"):
                return CheckResult(
                    "relay_tls", WARN, "tls.plain_offered", {}, settings.smtp_url + "?starttls=1"
                )
            return CheckResult("relay_tls", WARN, "tls.plain", {}, fix)
        if endpoint.security == "starttls":
            client.starttls(context=endpoint.ssl_context())
        sock = client.sock
        version = sock.version() if isinstance(sock, ssl.SSLSocket) else "TLS"
        return CheckResult("relay_tls", PASS, "tls.ok", {"version": version})
    except ssl.SSLError as exc:
        return CheckResult("relay_tls", FAIL, "tls.bad", {"error": _ssl_text(exc)}, fix)
    except (OSError, smtplib.SMTPException) as exc:
        return CheckResult("relay_tls", FAIL, "tls.bad", {"error": str(exc)}, fix)
    finally:
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()


def _ssl_text(exc: ssl.SSLError) -> str:
    return getattr(exc, "verify_message", None) or exc.reason or str(exc)


def check_public_url(settings: Settings) -> CheckResult:
    url = settings.public_base_url
    if urlsplit(url).scheme != "https":
        return CheckResult(
            "public_url",
            FAIL,
            "url.http",
            {"url": url},
            f'public_base_url = "https://{urlsplit(url).netloc or "bulletin.example.org"}"',
        )
    return CheckResult("public_url", PASS, "url.ok")


def check_unsubscribe(settings: Settings) -> CheckResult:
    if not settings.unsubscribe_mailto:
        return CheckResult(
            "unsubscribe",
            WARN,
            "unsub.no_mailto",
            {},
            f'unsubscribe_mailto = "unsubscribe@{from_domain(settings)}"',
        )
    return CheckResult("unsubscribe", PASS, "unsub.ok")


def check_postal_address(settings: Settings) -> CheckResult:
    if not settings.postal_address.strip():
        return CheckResult("postal_address", WARN, "postal.none", {}, 'postal_address = "…"')
    return CheckResult("postal_address", PASS, "postal.ok")


def run_doctor(settings: Settings, resolver: Resolver | None = None) -> DoctorReport:
    """Every check, in the order a person fixes them. Never raises for what DNS returns."""
    resolver = resolver or Resolver.from_settings(settings)  # ConfigError: bad dns_nameservers
    relays = _relays(settings, resolver)
    relay_checks: list[Callable[[], CheckResult]] = []
    if isinstance(relays, CheckResult):  # the relay settings themselves are wrong
        bad = relays
        relay_checks = [
            lambda: CheckResult("relay_ptr", bad.status, bad.key, bad.params),
            lambda: CheckResult("relay_tls", bad.status, bad.key, bad.params),
        ]
        relays = []
    elif not relays:
        relay_checks = [
            lambda: CheckResult("relay_ptr", WARN, "relay.none"),
            lambda: CheckResult("relay_tls", WARN, "relay.none"),
        ]
    for relay in relays:  # one PTR and one TLS finding per relay
        relay_checks += [
            lambda relay=relay: _named(check_relay_ptr(relay, resolver), relay, len(relays)),
            lambda relay=relay: _named(check_relay_tls(settings, relay), relay, len(relays)),
        ]
    checks: list[Callable[[], CheckResult]] = [
        lambda: check_spf(settings, resolver, relays),
        lambda: check_dkim(settings, resolver),
        lambda: check_dmarc(settings, resolver),
        lambda: check_bounce_mx(settings, resolver),
        *relay_checks,
        lambda: check_public_url(settings),
        lambda: check_unsubscribe(settings),
        lambda: check_postal_address(settings),
    ]
    return DoctorReport(from_domain(settings), [check() for check in checks])


def _named(result: CheckResult, relay: _Relay, count: int) -> CheckResult:
    """With several relays, say which one a finding is about."""
    if count < 2:
        return result
    return CheckResult(
        result.check,
        result.status,
        result.key,
        {**result.params, "relay": relay.name},
        result.record,
    )


REPORT_FILE = "doctor-report.json"


def save_report(settings: Settings, report: DoctorReport) -> dict[str, Any]:
    """Keep the last report in data_dir, so a send can consult it without asking DNS again."""
    import json
    from datetime import UTC, datetime

    data = {"checked_at": datetime.now(UTC).isoformat(), **report.as_dict()}
    path = settings.data_dir / REPORT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    tmp.replace(path)
    return data


def load_report(settings: Settings) -> dict[str, Any] | None:
    """The last saved report (with `checked_at`), or None when doctor has not run here."""
    import json

    path = settings.data_dir / REPORT_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def summary_line(report: DoctorReport, locale: str | None = None) -> str:
    """'dkim: …; dmarc: …' for the failing checks (send warnings, refusals)."""
    return "; ".join(f"{r.check}: {r.reason(locale)}" for r in report.failures)
