"""Every word of dispatch.vocabulary has its translation, and the pages show it translated."""

from __future__ import annotations

import enum

from dispatch import vocabulary
from dispatch.web.texts import TEXTS


def test_every_vocabulary_word_has_a_chinese_and_english_translation():
    missing = []
    for name in dir(vocabulary):
        value = getattr(vocabulary, name)
        if isinstance(value, type) and issubclass(value, enum.StrEnum):
            for member in value:
                if name == "AuditAction":
                    key = f"act_{member.value}"
                elif name == "AuditTarget":
                    key = f"target_{member.value}"
                else:
                    key = f"st_{member.value}"
                if key not in TEXTS.messages:
                    missing.append(f"{name}.{member.name} ({key})")
    assert not missing, f"add these to web/texts_admin.py: {missing}"
    for key, (zh, en) in TEXTS.messages.items():
        if key.startswith(("st_", "act_")):
            assert zh and en and zh != en or zh.isupper(), key
