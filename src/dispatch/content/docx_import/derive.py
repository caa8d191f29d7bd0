"""What a bulletin's Word file says only in words: the period, the issue number, sources.

Why here, apart from the walker: each rule is a small guess the report must name, and each is
easy to test alone. Real bulletins write 【2023年2月1日-2023年2月28日】 or 2023年2月, a
来源：中国政府网 时间：2023-02-06 line without any address, and 第2期 at best.
"""

from __future__ import annotations

import calendar
import re
from datetime import date

DATE_RE = re.compile(r"(\d{4})\s*[-年./]\s*(\d{1,2})\s*[-月./]\s*(\d{1,2})\s*日?")
MONTH_RE = re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月(?!\s*\d{1,2}\s*日)")
NUMBER_RE = re.compile(r"第\s*(\d{1,3})\s*期")
META_KEYS = {
    "来源": "source",
    "来源于": "source",
    "稿源": "source",
    "出处": "source",
    "文章来源": "source",
    "时间": "date",
    "日期": "date",
    "发布时间": "date",
    "发布日期": "date",
    "作者": "author",
    "记者": "author",
    "文": "author",
}
META_RE = re.compile(
    r"(?:^|[\s　（(|｜])(" + "|".join(sorted(META_KEYS, key=len, reverse=True)) + r")\s*[：:]\s*"
)
DOMAIN_RE = re.compile(
    r"\b((?:www|m|news|tv)\.[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:cn|com|org|net))\b", re.IGNORECASE
)
KNOWN_SITES = {
    "中国政府网": "https://www.gov.cn/",
    "新华网": "https://www.news.cn/",
    "新华社": "https://www.news.cn/",
    "人民网": "http://www.people.com.cn/",
    "央视网": "https://www.cctv.com/",
    "中国质量新闻网": "https://www.cqn.com.cn/",
    "中国质量报": "https://www.cqn.com.cn/",
    "中国汽车质量网": "https://www.aqsigauto.com/",
    "国家市场监督管理总局": "https://www.samr.gov.cn/",
    "市场监管总局": "https://www.samr.gov.cn/",
    "国家标准化管理委员会": "https://www.sac.gov.cn/",
    "工业和信息化部": "https://www.miit.gov.cn/",
    "中国消费者协会": "https://www.cca.org.cn/",
    "中国质量发展研究院": "https://iqd.sjtu.edu.cn/",
    "上海交通大学中国质量发展研究院": "https://iqd.sjtu.edu.cn/",
    "上海交通大学": "https://www.sjtu.edu.cn/",
}


def parse_date(text: str) -> date | None:
    m = DATE_RE.search(text)
    if not m:
        return None
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


def find_period(text: str) -> tuple[date, date] | None:
    """【2023年2月1日-2023年2月28日】 (two dates) or 2023年2月 (the whole month)."""
    dates = [d for d in (parse_date(m.group(0)) for m in DATE_RE.finditer(text)) if d]
    if len(dates) >= 2 and dates[0] <= dates[1]:
        return dates[0], dates[1]
    m = MONTH_RE.search(text)
    if m and 1 <= int(m.group(2)) <= 12:
        year, month = int(m.group(1)), int(m.group(2))
        return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])
    return None


def find_number(text: str) -> int | None:
    m = NUMBER_RE.search(text)
    return int(m.group(1)) if m and int(m.group(1)) > 0 else None


def is_meta_line(text: str) -> bool:
    """来源：… / 时间：… at the start of a short line (the article's byline)."""
    m = META_RE.match(text.strip())
    return bool(m) and len(text) <= 200


def split_meta(text: str) -> dict[str, str]:
    """{'source': …, 'date': …, 'author': …} from a 来源：X 时间：Y 作者：Z line."""
    found: dict[str, str] = {}
    marks = list(META_RE.finditer(text))
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        value = text[m.end() : end].strip(" 　|｜）)（(")
        key = META_KEYS[m.group(1)]
        if value and key not in found:
            found[key] = value
    return found


def known_site(source: str) -> str | None:
    source = source.strip()
    if source in KNOWN_SITES:
        return KNOWN_SITES[source]
    for name, url in sorted(KNOWN_SITES.items(), key=lambda kv: -len(kv[0])):
        if name in source:
            return url
    return None


def domain_in(text: str) -> str | None:
    m = DOMAIN_RE.search(text)
    return f"https://{m.group(1).lower()}/" if m else None
