"""Every user-facing string in zh-CN and en; the subscriber's (or user's) locale picks.

Each module keeps its own small Catalog next to the code that uses it, so adding a string
never means editing a shared file.
"""

from __future__ import annotations

LOCALES = ("zh-CN", "en")
DEFAULT_LOCALE = "zh-CN"


def normalise_locale(value: str | None) -> str | None:
    """Map common spellings (zh, zh_cn, EN-us…) to a supported locale, or None if unknown."""
    if not value:
        return None
    v = value.strip().replace("_", "-").lower()
    if v in ("zh", "zh-cn", "zh-hans", "zh-hans-cn", "cn", "chinese", "中文"):
        return "zh-CN"
    if v in ("en", "en-us", "en-gb", "english"):
        return "en"
    return None


class Catalog:
    """A module's messages: key -> (zh-CN, en). Formatting uses str.format(**kwargs)."""

    def __init__(self, messages: dict[str, tuple[str, str]]):
        self.messages = messages

    def get(self, key: str, locale: str | None = None, **kwargs: object) -> str:
        zh, en = self.messages[key]
        text = en if (locale or DEFAULT_LOCALE) == "en" else zh
        return text.format(**kwargs) if kwargs else text

    def both(self, key: str, **kwargs: object) -> str:
        """'中文 / English' for places with no known reader (CLI output, shared pages)."""
        zh, en = self.messages[key]
        if kwargs:
            zh, en = zh.format(**kwargs), en.format(**kwargs)
        return f"{zh} / {en}"
