"""The prepared MIME template: the standard parser reads back exactly what we personalised."""

from __future__ import annotations

import base64
import email
import email.policy

import pytest

from dispatch.channels.email_message import (
    MessageBuildError,
    base64_body,
    build_template,
    clean_header_text,
    encode_words,
)

HTML = (
    "<html><body>"
    + "<p>质量发展 · 工作简报 line with . dots</p>\n" * 400
    + ".starts with a dot\n</body></html>"
)
TEXT = "张三，您好：\n\n本期要闻……\n.line starting with a dot\n"


def template(**overrides):
    kwargs = dict(
        campaign_id=7,
        subject="中国质量发展研究院 工作简报 2023年第2期（总第15期）",
        from_address="bulletin@example.org",
        from_name="中国质量发展研究院 工作简报",
        list_id="bulletin.example.org",
        reply_to="editor@example.org",
        unsubscribe_mailto="unsubscribe@example.org",
    )
    kwargs.update(overrides)
    return build_template(**kwargs)


def fill(tpl, **overrides) -> bytes:
    kwargs = dict(
        delivery_id=42,
        to_address="zhang.san@example.net",
        to_name="张三",
        unsubscribe_url="https://bulletin.example.org/u/TOKEN123",
        html=HTML,
        text=TEXT,
    )
    kwargs.update(overrides)
    return tpl.fill(**kwargs)


def parse(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_both_parts_decode_to_the_personalised_html_and_text():
    msg = parse(fill(template()))
    assert msg.get_content_type() == "multipart/alternative"
    plain, html = list(msg.iter_parts())
    assert plain.get_content_type() == "text/plain" and html.get_content_type() == "text/html"
    assert plain.get_content_charset() == html.get_content_charset() == "utf-8"
    assert html["Content-Transfer-Encoding"] == "base64"
    assert html.get_content() == HTML
    assert plain.get_content() == TEXT
    assert not msg.defects and not plain.defects and not html.defects


def test_headers_are_present_and_decoded():
    msg = parse(fill(template()))
    assert msg["From"].addresses[0].display_name == "中国质量发展研究院 工作简报"
    assert msg["From"].addresses[0].addr_spec == "bulletin@example.org"
    assert msg["To"].addresses[0].display_name == "张三"
    assert msg["To"].addresses[0].addr_spec == "zhang.san@example.net"
    assert msg["Reply-To"].addresses[0].addr_spec == "editor@example.org"
    assert msg["Subject"] == "中国质量发展研究院 工作简报 2023年第2期（总第15期）"
    assert msg["Message-ID"] == "<d42.c7@example.org>"
    assert msg["MIME-Version"] == "1.0"
    assert msg["Date"].datetime is not None
    assert msg["List-Id"] == "<bulletin.example.org>"
    assert msg["List-Unsubscribe"] == (
        "<https://bulletin.example.org/u/TOKEN123>, <mailto:"
        "unsubscribe@example.org?subject=unsubscribe>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_https_only_unsubscribe_without_mailto_and_no_reply_to():
    msg = parse(fill(template(unsubscribe_mailto="", reply_to="")))
    assert msg["List-Unsubscribe"] == "<https://bulletin.example.org/u/TOKEN123>"
    assert msg["Reply-To"] is None


def test_message_id_is_stable_per_delivery():
    tpl = template()
    assert parse(fill(tpl))["Message-ID"] == parse(fill(tpl, html="other"))["Message-ID"]
    assert parse(fill(tpl, delivery_id=43))["Message-ID"] == "<d43.c7@example.org>"


def test_crlf_line_endings_and_short_lines():
    raw = fill(template())
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    # everything but the URL-bearing List-Unsubscribe line is folded within 78 characters
    assert all(len(line) <= 78 for line in head.split(b"\r\n") if b"https://" not in line)


def test_base64_keeps_chinese_html_small():
    raw = fill(template())
    html_bytes = len(HTML.encode("utf-8"))
    assert len(raw) < html_bytes * 1.40 + len(TEXT.encode()) * 1.4 + 2000


@pytest.mark.parametrize(
    "name",
    [
        "张三\r\nBcc: victim@example.com",
        "Evil\nBcc: victim@example.com",
        "Evil\rBcc: victim@example.com",
    ],
)
def test_a_name_with_crlf_cannot_inject_a_header(name):
    msg = parse(fill(template(), to_name=name))
    assert msg["Bcc"] is None
    assert "\n" not in msg["To"] and "\r" not in msg["To"]
    assert msg["To"].addresses[0].addr_spec == "zhang.san@example.net"
    assert msg["To"].addresses[0].display_name == clean_header_text(name)


def test_a_subject_with_crlf_cannot_inject_a_header():
    msg = parse(fill(template(subject="Issue 2\r\nBcc: victim@example.com\r\n\r\nbody")))
    assert msg["Bcc"] is None
    assert msg["Subject"] == "Issue 2 Bcc: victim@example.com body"
    assert msg.get_content_type() == "multipart/alternative"


@pytest.mark.parametrize(
    "address", ["a@b.example\r\nBcc: x@y", "<a@b.example>", "no-at-sign", "a b@example.org", ""]
)
def test_malformed_recipient_addresses_are_refused(address):
    with pytest.raises(MessageBuildError):
        fill(template(), to_address=address)


def test_malformed_settings_are_refused_with_the_setting_named():
    with pytest.raises(MessageBuildError, match="from_address"):
        template(from_address="not an address")
    with pytest.raises(MessageBuildError, match="list_id"):
        template(list_id="<bad id>")


def test_ascii_names_with_specials_are_quoted():
    msg = parse(fill(template(), to_name='Doe, "Jane"'))
    assert msg["To"].addresses[0].display_name == 'Doe, "Jane"'
    assert len(msg["To"].addresses) == 1


def test_long_names_split_into_encoded_words_on_character_boundaries():
    name = "很长的名字" * 20
    words = encode_words(name)
    assert len(words) > 1 and all(len(w) <= 75 for w in words)
    decoded = parse(fill(template(), to_name=name))["To"].addresses[0].display_name
    # Python's address parser puts a space between adjacent encoded-words of a phrase (its own
    # generator's output reads back the same way); RFC 2047 readers join them.
    assert decoded.replace(" ", "") == name


def test_template_is_built_once_and_filled_per_recipient_independently():
    tpl = template()
    a = parse(
        fill(
            tpl,
            delivery_id=1,
            to_address="a@example.net",
            to_name="甲",
            html="<p>甲</p>",
            text="甲",
        )
    )
    b = parse(
        fill(
            tpl,
            delivery_id=2,
            to_address="b@example.net",
            to_name="乙",
            html="<p>乙</p>",
            text="乙",
        )
    )
    assert a["To"].addresses[0].display_name == "甲" and b["To"].addresses[0].display_name == "乙"
    assert list(a.iter_parts())[1].get_content() == "<p>甲</p>"
    assert list(b.iter_parts())[1].get_content() == "<p>乙</p>"
    assert a["Subject"] == b["Subject"]


@pytest.mark.parametrize("length", [0, 1, 2, 56, 57, 58, 113, 114, 115, 999, 20_001])
def test_base64_lines_match_the_standard_encoder(length):
    text = ("质" if length % 2 else "a") * length
    assert base64_body(text) == base64.encodebytes(text.encode("utf-8")).replace(b"\n", b"\r\n")
