"""The preview artifacts of an issue (email.html, email.txt, wechat.json), built in memory.

Why in memory first: `dispatch render` and `dispatch demo` write all files only once every
renderer has succeeded, so a failed render never leaves half a set behind.
"""

from __future__ import annotations

import json
from pathlib import Path

from dispatch.config import Settings
from dispatch.content.model import IssueDoc
from dispatch.render.email import GMAIL_CLIP_BYTES, render_email
from dispatch.render.slots import RecipientSlots
from dispatch.render.wechat import render_wechat

SAMPLE_RECIPIENT_NAME = {"zh-CN": "读者", "en": "Reader"}
ARTIFACT_NAMES = ("email.html", "email.txt", "wechat.json")


def sample_slots(doc: IssueDoc, settings: Settings) -> RecipientSlots:
    """A stand-in recipient for previews: no tracking, an unsubscribe URL that shows where it
    goes."""
    base = settings.public_base_url.rstrip("/")
    return RecipientSlots(
        name=SAMPLE_RECIPIENT_NAME.get(doc.meta.locale, "读者"),
        unsubscribe_url=f"{base}/u/preview",
        open_url=None,
        click_urls=None,
    )


def render_artifacts(doc: IssueDoc, settings: Settings) -> dict[str, bytes]:
    """Every preview file of the issue, keyed by file name."""
    email = render_email(doc, settings, tracking=False)
    html, text = email.personalize(sample_slots(doc, settings))
    articles = render_wechat(doc, settings)
    wechat = {
        "issue": doc.meta.slug,
        "content_hash": doc.content_hash,
        "articles": [a.to_json() for a in articles],
    }
    return {
        "email.html": html.encode("utf-8"),
        "email.txt": text.encode("utf-8"),
        "wechat.json": json.dumps(wechat, ensure_ascii=False, indent=2).encode("utf-8"),
    }


def write_artifacts(out_dir: Path, artifacts: dict[str, bytes]) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, data in artifacts.items():
        path = out_dir / name
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        written[name] = path
    return written


__all__ = [
    "ARTIFACT_NAMES",
    "GMAIL_CLIP_BYTES",
    "render_artifacts",
    "sample_slots",
    "write_artifacts",
]
