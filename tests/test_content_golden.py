"""Existing sources render exactly as before the parser changed.

The golden files under tests/fixtures/golden/ were written by the hand-written parser that
markdown-it-py replaced (issue 19 item 2; see the commit that added them): the email HTML
and text of every example with and without tracking, and the WeChat draft articles. Any
difference here means an editor's existing issue would look different after the upgrade.

To rewrite them on purpose (a deliberate change of a template): DISPATCH_REGOLD=1 pytest
tests/test_content_golden.py, and say why in the commit.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from dispatch.config import Settings, load_settings
from dispatch.content.parse import parse_issue
from dispatch.paths import SAMPLE_ISSUE_DIR
from dispatch.render import email as email_render
from dispatch.render.email import render_email
from dispatch.render.wechat import render_wechat

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = FIXTURES / "golden"
BASE = "https://bulletin.example.org"
EXAMPLES = {
    "sample-2023-02": SAMPLE_ISSUE_DIR,
    "valid": FIXTURES / "issues" / "valid",
    "legacy_quirks": FIXTURES / "sources" / "legacy_quirks",
}


@pytest.fixture(scope="module")
def plain_settings() -> Settings:
    return load_settings(env={}).replace(secret_key="golden", public_base_url=BASE)


def plain_data(value: Any) -> Any:
    """The parsed document as JSON-able data; fields left at their default are omitted, so
    the model may grow (a new field with a default) without touching the golden files."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {"kind": type(value).__name__}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if f.default is not dataclasses.MISSING and item == f.default:
                continue
            if f.name in ("source_dir", "source_text", "content_hash", "path"):
                continue
            out[f.name] = plain_data(item)
        return out
    if isinstance(value, tuple | list):
        return [plain_data(v) for v in value]
    if isinstance(value, date | Path):
        return str(value)
    return value


def rendered_outputs(folder: Path, settings: Settings) -> dict[str, str]:
    """Every output an editor's source turns into, with machine paths made neutral."""
    doc = parse_issue(folder)
    root = str(doc.source_dir)
    out = {"doc.json": json.dumps(plain_data(doc), ensure_ascii=False, indent=1)}
    email_render.clear_cache()
    for tracking in (True, False):
        rendered = render_email(doc, settings, tracking=tracking)
        names = ["{GREETING}", "{UNSUB}", "{PIXEL}"]
        names += [f"{{LINK{i}}}" for i in range(rendered.link_count)]
        suffix = "tracked" if tracking else "plain"
        out[f"email-{suffix}.html"] = rendered.html_layout.fill(names)
        out[f"email-{suffix}.txt"] = rendered.text_layout.fill(names)
    articles = [a.to_json() for a in render_wechat(doc, settings)]
    out["wechat.json"] = json.dumps(articles, ensure_ascii=False, indent=1).replace(root, "{DIR}")
    return out


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_existing_sources_render_as_before(name, plain_settings):
    outputs = rendered_outputs(EXAMPLES[name], plain_settings)
    folder = GOLDEN / name
    if os.environ.get("DISPATCH_REGOLD") == "1":
        folder.mkdir(parents=True, exist_ok=True)
        for file, text in outputs.items():
            (folder / file).write_text(text, encoding="utf-8")
    for file, text in outputs.items():
        expected = (folder / file).read_text(encoding="utf-8")
        if text != expected:
            diff = difflib.unified_diff(
                expected.splitlines(), text.splitlines(), "before", "now", lineterm="", n=1
            )
            pytest.fail(f"{name}/{file} differs:\n" + "\n".join(list(diff)[:60]))
