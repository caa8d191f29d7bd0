"""Mail client and device from a user agent: a small table of mail apps, then ua-parser.

Why both: ua-parser (the maintained port of Browserscope's rules) knows browsers, operating
systems and devices, but not the mail apps common in China (QQ Mail, NetEase Mail Master,
Foxmail, WeChat's built-in browser) nor Gmail's image proxy; MAIL_CLIENTS names those first.
Agents are cut to MAX_AGENT characters before parsing (a 10 KB agent costs no more than a
normal one) and results are cached: a campaign has thousands of opens but few distinct agents.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

MAX_AGENT = 512
UNKNOWN = "unknown"

# lower-case token in the agent → mail client name (checked in order, before ua-parser)
MAIL_CLIENTS = (
    ("googleimageproxy", "Gmail"),
    ("qqmail", "QQ Mail"),
    ("mailmaster", "NetEase Mail Master"),
    ("foxmail", "Foxmail"),
    ("micromessenger", "WeChat"),
    ("thunderbird", "Thunderbird"),
    ("microsoft outlook", "Outlook"),
    ("ms-office", "Outlook"),
    ("outlook", "Outlook"),
    ("dingtalk", "DingTalk"),
    ("lark", "Feishu/Lark"),
)
WEBVIEW_FAMILIES = ("Mobile Safari UI/WKWebView", "Apple Mail")
DESKTOP_OS = ("windows", "mac os x", "linux", "ubuntu", "chrome os", "fedora", "debian")


@dataclass(frozen=True)
class Agent:
    client: str  # mail client or browser family
    device: str  # one of DEVICES
    os: str


def _device(os_family: str, device_family: str, lowered: str) -> str:
    os_l, dev_l = os_family.lower(), device_family.lower()
    if "ipad" in dev_l or "tablet" in lowered:
        return "tablet"
    if os_l in ("ios", "android", "harmonyos") or "mobile" in lowered:
        return "mobile"
    if os_l.startswith(DESKTOP_OS) or dev_l == "mac":
        return "desktop"
    return UNKNOWN


@lru_cache(maxsize=8192)
def parse_agent(agent: str | None) -> Agent:
    """The mail client, device class and OS named by a user agent (cut to MAX_AGENT)."""
    text = (agent or "")[:MAX_AGENT]
    if not text.strip():
        return Agent(UNKNOWN, UNKNOWN, UNKNOWN)
    lowered = text.lower()
    if "googleimageproxy" in lowered:
        return Agent("Gmail", "proxy", UNKNOWN)
    if lowered.strip() == "mozilla/5.0":  # Apple's Mail Privacy Protection proxy
        return Agent("Apple Mail (MPP)", "proxy", UNKNOWN)
    from ua_parser import parse  # imported here: its rules load in ~0.2 s, only reports need it

    result = parse(text)
    os_family = result.os.family if result.os else "Other"
    device_family = result.device.family if result.device else "Other"
    client = next((name for token, name in MAIL_CLIENTS if token in lowered), None)
    if client is None:
        family = result.user_agent.family if result.user_agent else "Other"
        if family in WEBVIEW_FAMILIES or (
            family in ("Other", "")
            and os_family in ("iOS", "Mac OS X")
            and "applewebkit" in lowered
        ):
            family = "Apple Mail"  # Mail.app sends WebKit's agent without a browser token
        client = family if family not in ("", "Other") else UNKNOWN
    return Agent(client, _device(os_family, device_family, lowered), os_family or UNKNOWN)
