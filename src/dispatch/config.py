"""Typed settings: defaults for the embedded setup, overridden by a TOML file, then by DISPATCH_*
env.

Why this order: the defaults make `dispatch demo` run on a bare machine; a config file outside
git holds a deployment's settings; the environment wins so containers and CI can override
anything (secrets included) without writing files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dispatch.errors import DispatchError
from dispatch.paths import PROJECT_ROOT, TEMPLATES_DIR

ENV_PREFIX = "DISPATCH_"
DEFAULT_CONFIG_FILE = PROJECT_ROOT / "config" / "dispatch.toml"
SECRET_FIELDS = frozenset(
    {
        "secret_key",
        "smtp_password",
        "wechat_app_secret",
        "wechat_aes_key",
        "wechat_token",
        "bounce_mailbox_password",
        "bounce_webhook_secret",
    }
)


class ConfigError(DispatchError):
    """A setting is missing or malformed; the message names the setting and its source."""


def _both(zh: str, en: str) -> str:
    """'中文 / English' (config sits below dispatch.i18n's users, so it formats its own)."""
    return f"{zh} / {en}"


@dataclass(frozen=True)
class Settings:
    # storage and queue
    data_dir: Path = Path("var")
    database_url: str = ""  # empty: SQLite file in data_dir
    broker_url: str = ""  # empty: embedded broker (see delivery docs)
    redis_url: str = ""  # empty: in-process rate limiter and token cache
    # public web side
    public_base_url: str = ""  # empty: http://<web_host>:<web_port>, where `dispatch web` serves
    web_host: str = "127.0.0.1"
    web_port: int = 8000
    # hostile requests (dispatch.web.request_guard, dispatch.web.throttle)
    request_max_bytes: int = 65_536  # body of a form, JSON or callback request; over it: 413
    upload_max_bytes: int = 20 * 1024 * 1024  # an issue (with images) or CSV upload: 413 over
    webhook_max_bytes: int = 1024 * 1024  # a bounce/complaint webhook under /webhooks/
    # Word import (dispatch.content.docx_import): refused above these, before unpacking
    docx_max_bytes: int = 20 * 1024 * 1024  # the .docx file itself
    docx_max_unpacked_bytes: int = 200 * 1024 * 1024  # all its parts, uncompressed (zip bomb)
    login_window_seconds: int = 900  # failed log-ins counted over this window
    login_free_failures_account: int = 5  # per account and client address before a delay
    login_free_failures_client: int = 20  # per client address (any account) before a delay
    login_free_failures_global: int = 100  # per account from all addresses before a delay
    login_max_delay_seconds: int = 300  # the longest a throttled client waits
    login_failure_pause_seconds: float = 1.0  # every failed log-in answers after this long
    secret_key: str = ""  # empty: generated once into data_dir/secret_key (never in git)
    templates_dir: Path = TEMPLATES_DIR
    # email
    smtp_url: str = ""  # empty: local outbox sink writing .eml files under data_dir/outbox
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_timeout: float = 30.0
    from_address: str = "bulletin@example.org"
    from_name: str = "中国质量发展研究院 工作简报"
    reply_to: str = ""
    list_id: str = "bulletin.example.org"
    unsubscribe_mailto: str = ""  # e.g. unsubscribe@example.org; empty: https only
    dkim_selector: str = ""
    dkim_domain: str = ""
    dkim_key_file: str = ""
    dkim_ed25519_selector: str = ""  # optional second key (RFC 8463), only beside the RSA one
    dkim_ed25519_key_file: str = ""
    dkim_allow_unaligned: bool = False  # sign with a d= that does not align with From (DMARC fails)
    postal_address: str = ""  # the sender's postal address, shown in every email footer
    # deliverability (dispatch doctor, the reputation guard)
    dns_nameservers: str = ""  # "host[:port],…" for doctor's lookups; empty: the system resolver
    dns_timeout: float = 3.0  # seconds per DNS question
    relay_spf_include: str = ""  # the relay's SPF include, e.g. spf.mail.qq.com (checked in SPF)
    bounce_mx_hosts: str = ""  # host(s) the bounce domain's MX must name (where bounces arrive)
    doctor_enforce: bool = False  # refuse sends to real lists while doctor reports failures
    reputation_window: int = 1000  # recent deliveries a campaign's bounce/complaint rates cover
    reputation_min_sample: int = 100  # no verdict on fewer deliveries than this
    reputation_max_bounce_rate: float = 0.05  # hard bounces / window; above: pause the campaign
    reputation_max_complaint_rate: float = 0.001  # complaints / window; above: pause
    list_max_risky_share: float = 0.05  # role or invalid addresses in a list; above: warn
    # bounces and complaints (dispatch.bounces)
    bounce_address: str = ""  # e.g. bounces@bulletin.example.org: VERP MAIL FROM; empty: off
    bounce_mailbox_url: str = ""  # imaps://user@host/INBOX or pop3s://user@host; empty: off
    bounce_mailbox_password: str = ""  # from the environment, never in the URL
    bounce_mailbox_done_folder: str = "dispatch-processed"  # IMAP; empty: delete when done
    bounce_poll_seconds: float = 300.0  # beat: how often the bounce mailbox is polled
    soft_bounce_limit: int = 3  # this many soft bounces ...
    soft_bounce_days: int = 30  # ... within this many days suppress the address
    bounce_raw_max_bytes: int = 200_000  # raw message kept per bounce (before compression)
    bounce_webhook_secret: str = ""  # generic signed JSON webhook (HMAC-SHA256); empty: off
    bounce_webhook_tolerance_seconds: int = 300  # accepted clock skew of its timestamp
    ses_topic_arns: str = ""  # comma-separated SNS topic ARNs accepted at /webhooks/ses
    # events at scale (dispatch.rollup): a campaign finished this many days ago has its
    # per-recipient tracking detail rolled into daily counts (event_daily); 0: keep forever
    events_retention_days: int = 400
    # delivery policy
    batch_size: int = 200
    # messages per send call and recording transaction; also how often a batch looks at
    # pause/cancel and its lease. Larger: fewer round trips; more re-sent after a SIGKILL
    chunk_size: int = 100
    max_attempts: int = 5
    retry_base_seconds: float = 60.0
    retry_max_seconds: float = 6 * 3600.0
    lease_seconds: float = 600.0
    rate_per_second: float = 0.0  # 0: unlimited
    rate_per_hour: float = 0.0
    heartbeat_seconds: float = 5.0  # workers and beat record that they run this often
    recovery_seconds: float = 2.0  # beat: dead workers' claims, lost queue entries; 0: off
    sweep_seconds: float = 15.0  # beat: lease expiry, due retries, due schedules
    celery_queue: str = "dispatch"
    redis_key_prefix: str = ""  # Celery global_keyprefix and rate-limit keys (tests isolate by it)
    # WeChat Official Account
    wechat_app_id: str = ""
    wechat_app_secret: str = ""
    wechat_api_base_url: str = ""  # empty: the real API; set to a fake's URL in tests/demo
    wechat_token: str = ""  # callback signature token
    wechat_aes_key: str = ""  # callback EncodingAESKey; set: only safe-mode callbacks accepted
    # subscription | service, and whether WeChat verified it (认证): what the account may send
    wechat_account_type: str = "service"
    wechat_verified: bool = True
    wechat_token_endpoint: str = "stable_token"  # stable_token (recommended) | token (classic)
    wechat_token_url: str = ""  # a central token service to read the token from instead
    wechat_callback_window: int = 300  # seconds a callback's timestamp may be off
    wechat_sync_list: str = "wechat-followers"  # the list follower sync fills
    wechat_sync_hour: int = 3  # UTC hour of the daily follower sync (beat)
    wechat_retry_scale: float = 1.0  # multiplies WeChat retry waits (tests and demos shrink it)
    # public subscription form (issue 13): abuse limits; 0 switches a limit off
    signup_pow_bits: int = 16  # leading zero bits of the form's hashcash (browser: < 1 s)
    signup_address_interval_seconds: float = 600.0  # one confirmation email per address per …
    signup_address_per_day: float = 3.0
    signup_ip_per_minute: float = 30.0  # form posts from one client IP
    signup_ip_per_day: float = 500.0  # confirmation emails caused by one client IP
    signup_nojs_per_hour: float = 20.0  # posts without proof-of-work, all clients together
    signup_check_mx: bool = True  # refuse a domain with no MX (nor A) record (dns_nameservers)
    wechat_oauth_url: str = "https://open.weixin.qq.com/connect/oauth2/authorize"
    # good-citizen sending (dispatch.delivery.relays / providers / throttle / windows / warmup)
    relays: list[dict[str, Any]] = field(default_factory=list)  # [[relays]]; empty: smtp_url
    relay_down_seconds: float = 300.0  # a relay that failed to connect rests this long
    providers_file: str = ""  # TOML overriding/extending the shipped provider table
    provider_mx_lookup: bool = True  # unknown recipient domains: provider by MX (cached a day;
    # asked through dns_nameservers)
    provider_mx_lookup_max: int = 200  # distinct unknown domains looked up per fan-out
    throttle_base_seconds: float = 60.0  # first backoff of a throttling provider
    throttle_max_seconds: float = 3600.0
    throttle_recovery_seconds: float = 600.0  # back to full speed over this long after backoff
    send_timezone: str = "Asia/Shanghai"  # sending windows and "a day" of quotas and warm-up
    send_window: str = ""  # default hours for every campaign, e.g. "08:00-21:00"; empty: any
    warmup_domains: list[str] = field(default_factory=list)  # From domains being warmed up
    warmup_start: int = 200  # day one's volume
    warmup_growth: float = 2.0  # next day's allowance = today's x this, while stats are good
    warmup_target: int = 200_000  # allowance at which warm-up is complete
    warmup_max_bounce_rate: float = 0.02
    warmup_max_complaint_rate: float = 0.001
    # review before sending (dispatch.editorial): only an approved version reaches real lists
    review_required: bool = True  # false: any published issue may be sent (the demo does)
    review_approvals: int = 1  # approvals by different reviewers a version needs (e.g. 2)
    # rendering
    email_size_budget: int = 95_000  # bytes; Gmail clips at 102,400
    locale: str = "zh-CN"

    def __post_init__(self) -> None:
        # Unconfigured, the public URL is the embedded server's own address, so previews and
        # email links point where `dispatch web` listens (it re-derives it for --host/--port).
        derived = not self.public_base_url
        if derived:
            object.__setattr__(self, "public_base_url", served_url(self.web_host, self.web_port))
        object.__setattr__(self, "public_base_url_derived", derived)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'dispatch.db').resolve()}"

    @property
    def is_embedded_db(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    def signing_key(self) -> str:
        """The secret for signed tokens: configured, or generated once into data_dir."""
        if self.secret_key:
            return self.secret_key
        key_file = self.data_dir / "secret_key"
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key_file.write_text(secrets.token_urlsafe(32))
            key_file.chmod(0o600)
        return key_file.read_text().strip()

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def redacted(self) -> dict[str, Any]:
        """Settings as a dict safe to print or log: secrets masked."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value:
                value = "***"
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out


def served_url(host: str, port: int) -> str:
    """The http URL of a server bound to host:port (a wildcard bind is reached on loopback)."""
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _coerce(name: str, kind: Any, raw: Any, source: str) -> Any:
    kind_name = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    try:
        if kind_name in ("Path",):
            return Path(raw)
        if kind_name == "int":
            return int(raw)
        if kind_name == "float":
            return float(raw)
        if kind_name == "bool":
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("1", "true", "yes", "on"):
                return True
            if str(raw).lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if kind_name == "str":
            return str(raw)
        if kind_name.startswith("list"):
            if isinstance(raw, str):  # from the environment: JSON, or comma-separated strings
                text = raw.strip()
                if text.startswith("["):
                    raw = json.loads(text)
                else:
                    raw = [part.strip() for part in text.split(",") if part.strip()]
            if not isinstance(raw, list):
                raise ValueError(raw)
            return raw
    except (TypeError, ValueError):
        raise ConfigError(
            _both(
                f"{source}：设置 {name!r} 应为 {kind_name}，实际为 {raw!r}",
                f"{source}: setting {name!r} must be {kind_name}, got {raw!r}",
            )
        ) from None
    return raw


def load_settings(
    config_file: str | Path | None = None, env: dict[str, str] | None = None
) -> Settings:
    """Build settings from defaults < TOML file < DISPATCH_* environment variables."""
    env = dict(os.environ if env is None else env)
    known = {f.name: f for f in fields(Settings)}
    values: dict[str, Any] = {}
    path = Path(config_file or env.get(ENV_PREFIX + "CONFIG") or DEFAULT_CONFIG_FILE)
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(_both(f"{path}：TOML 格式错误：{exc}", f"{path}: {exc}")) from None
        flat: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, dict):  # [section] tables flatten to section_key
                for sub, sub_value in value.items():
                    flat[f"{key}_{sub}"] = sub_value
            else:
                flat[key] = value
        for key, value in flat.items():
            if key not in known:
                raise ConfigError(
                    _both(f"{path}：未知设置 {key!r}", f"{path}: unknown setting {key!r}")
                )
            values[key] = _coerce(key, known[key].type, value, str(path))
    elif config_file is not None:
        raise ConfigError(_both(f"{path}：找不到配置文件", f"{path}: config file not found"))
    for name, f in known.items():
        env_name = ENV_PREFIX + name.upper()
        if env_name in env:
            values[name] = _coerce(name, f.type, env[env_name], f"environment {env_name}")
    return Settings(**values)


_cached: Settings | None = None


def get_settings() -> Settings:
    """Process-wide settings, loaded once (tests build their own with load_settings)."""
    global _cached
    if _cached is None:
        _cached = load_settings()
    return _cached


def set_settings(settings: Settings | None) -> None:
    global _cached
    _cached = settings
