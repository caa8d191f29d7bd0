"""The sample corpus: every real-world bounce / complaint / auto-reply in tests/fixtures/bounces
parses to the kind, address and status code its manifest (corpus.json) records.

Where each sample came from is in the manifest's `source` (and CORPUS.md): verbatim samples of
the sisimai project's set-of-emails, real DSNs written by Postfix here for provider replies, and
reconstructions of the Chinese providers' own formats, each labelled as such.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dispatch.bounces.parse import parse_bounce

CORPUS = Path(__file__).parent / "fixtures" / "bounces"
MANIFEST = {e["file"]: e for e in json.loads((CORPUS / "corpus.json").read_text())}


def test_every_sample_has_an_expectation_and_the_corpus_is_big_enough():
    files = {p.name for p in CORPUS.glob("*.eml")}
    assert files == set(MANIFEST)
    assert len(files) >= 40
    kinds = {e["kind"] for e in MANIFEST.values()}
    assert {"hard", "soft", "complaint", "auto_reply", "unknown"} <= kinds
    chinese = ("qq", "tencent", "exmail", "163", "126", "netease", "sina", "aliyun")
    assert sum(any(c in name for c in chinese) for name in files) >= 12


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_sample_parses_as_recorded(name):
    expected = MANIFEST[name]
    result = parse_bounce((CORPUS / name).read_bytes())
    got = {"kind": result.kind, "recipient": result.recipient, "status": result.status}
    want = {k: expected[k] for k in ("kind", "recipient", "status")}
    if expected["kind"] == "auto_reply":
        want.pop("recipient")
        got.pop("recipient")
    assert got == want, result.reason or result.diagnostic
