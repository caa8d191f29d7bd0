"""Branding from the web settings page: validated, previewed before saving, audited, and
reflected in the email (name, logo, colours, footer, design) and its Reply-To header."""

from __future__ import annotations

import email
import email.policy
import io

import pytest
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch import audit, branding
from dispatch.channels.base import CampaignContext, Recipient
from dispatch.channels.email_source import load_campaign_source
from dispatch.models import AuditEntry
from dispatch.paths import SAMPLE_ISSUE_DIR
from dispatch.render.email import render_email
from test_web_support import login, make_user, seed

pytest_plugins = ["test_web_support"]


def _png(width: int = 240, height: int = 60) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (155, 28, 28)).save(out, "PNG")
    return out.getvalue()


def _form(csrf: str, **values: str) -> dict[str, str]:
    base = {
        "csrf_token": csrf,
        "name": "质量研究院",
        "primary_colour": "#7a1f1f",
        "accent_colour": "#2a7a3f",
        "footer_text": "本简报仅供内部交流",
        "postal_address": "北京市海淀区学院路 1 号",
        "reply_to": "desk@example.org",
        "design": "letter",
    }
    return {**base, **values}


def test_preview_shows_without_saving_then_save_is_audited(client, engine, settings):
    seed(engine, settings, n_subscribers=1)
    make_user(engine, "admin")
    csrf = login(client, "admin@example.org")
    preview = client.post(
        "/admin/settings",
        data=_form(csrf, action="preview"),
        files={"logo_file": ("logo.png", _png(), "image/png")},
    )
    assert preview.status_code == 200
    frame = preview.text.split('id="brand-preview-phone"')[1].split("></iframe>")[0]
    assert "质量研究院" in frame and "本简报仅供内部交流" in frame and "letter-head" in frame
    assert "#7a1f1f" in frame and "/brand/logo/" in frame
    with Session(engine) as session:
        assert branding.load(session) == branding.Branding()  # nothing saved by a preview
    logo = preview.text.split('name="logo" value="')[1].split('"')[0]
    logo_png = client.get(f"/brand/logo/{logo}")
    assert logo_png.headers["content-type"] == "image/png" and logo_png.content == _png()
    saved = client.post("/admin/settings", data=_form(csrf, action="save", logo=logo))
    assert saved.status_code == 200 and saved.url.path == "/admin/settings"
    with Session(engine) as session:
        brand = branding.load(session)
        row = session.scalars(select(AuditEntry)).all()[-1]
    assert (brand.name, brand.design, brand.logo, brand.logo_width) == (
        "质量研究院",
        "letter",
        logo,
        200,
    )
    assert row.action == "change_setting" and row.target_id == "branding"
    assert row.before["design"] == "classic" and row.after["design"] == "letter"
    assert "primary_colour" in row.after and "postal_address" in row.after


@pytest.mark.parametrize(
    ("change", "upload", "field"),
    [
        ({"primary_colour": "red; background:url(x)"}, None, "primary_colour"),
        ({"reply_to": "not an address"}, None, "reply_to"),
        ({"design": "neon"}, None, "design"),
        ({"name": "x" * 101}, None, "name"),
        ({}, ("logo.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"), "logo"),
        ({}, ("logo.png", b"\x89PNG\r\n\x1a\n" + b"0" * 400_000, "image/png"), "logo"),
        ({}, ("big.png", None, "image/png"), "logo"),
    ],
)
def test_bad_values_are_refused_with_the_field_named(
    client, engine, settings, change, upload, field
):
    make_user(engine, "admin")
    csrf = login(client, "admin@example.org")
    files = None
    if upload:
        name, data, kind = upload
        files = {"logo_file": (name, data if data is not None else _png(2400, 10), kind)}
    answer = client.post("/admin/settings", data=_form(csrf, action="save", **change), files=files)
    assert answer.status_code == 422, answer.text[:300]
    assert f"{field}：" in answer.text or f"{field}:" in answer.text
    with Session(engine) as session:
        assert branding.load(session) == branding.Branding()
        assert (
            session.scalars(select(AuditEntry).where(AuditEntry.action == "change_setting")).all()
            == []
        )


def test_branding_is_part_of_the_render_cache_key(settings):
    from dispatch.content.parse import parse_issue

    doc = parse_issue(SAMPLE_ISSUE_DIR)
    plain = render_email(doc, settings, tracking=False)
    again = render_email(doc, settings, tracking=False, branding=branding.Branding())
    branded = render_email(
        doc,
        settings,
        tracking=False,
        branding=branding.Branding(name="某大学质量研究院", primary_colour="#7a1f1f"),
    )
    assert again is plain  # the default branding is the same rendering
    assert branded is not plain
    html = branded.html_template
    assert "某大学质量研究院" in html and "#7a1f1f" in html
    assert "某大学质量研究院" not in plain.html_template


def test_the_sent_message_carries_the_reply_to_and_the_branding(engine, settings):
    seeded = seed(engine, settings, n_subscribers=1)
    with Session(engine) as session, session.begin():
        brand = branding.validate(
            {"name": "质量研究院", "reply_to": "Desk@Example.org", "footer_text": "内部交流"}
        )
        branding.save(session, brand, audit.CLI)
    context = CampaignContext(
        campaign_id=seeded.campaign_id,
        issue_id=seeded.issue_id,
        batch_no=0,
        list_ids=(seeded.list_id,),
        tracking=False,
    )
    with Session(engine) as session:
        source = load_campaign_source(session, context, settings)
    recipient = Recipient(
        seeded.delivery_ids[0], seeded.subscriber_ids[0], "reader0@example.org", "读者", "zh-CN"
    )
    _, raw = source.message_for(recipient)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Reply-To"] == "Desk@example.org"
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert "质量研究院" in html and "内部交流" in html and "内部交流" in text
