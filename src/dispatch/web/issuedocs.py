"""Parsed issues for the web side, cached by content hash (a stored issue never changes
under its hash), plus the archive's image URL mapping."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from dispatch.content.model import IssueDoc
from dispatch.models.issue import Issue

_cache: OrderedDict[str, IssueDoc] = OrderedDict()
_lock = threading.Lock()
MAX_DOCS = 16


def issue_doc(issue: Issue) -> IssueDoc:
    """The IssueDoc of a stored issue (re-parsed once per content hash)."""
    from dispatch.content.store import load_issue_doc

    key = f"{issue.content_hash}:{issue.source_path}"
    with _lock:
        doc = _cache.get(key)
        if doc is not None:
            _cache.move_to_end(key)
            return doc
    doc = load_issue_doc(issue)
    with _lock:
        _cache[key] = doc
        while len(_cache) > MAX_DOCS:
            _cache.popitem(last=False)
    return doc


def image_files(doc: IssueDoc) -> dict[str, Path]:
    """src → file of every image the issue names: served at /issues/{slug}/{src} (the URL the
    email uses too). Only these can be served: a whitelist, never a filesystem walk."""
    root = doc.source_dir.resolve()
    allowed: dict[str, Path] = {}
    for image in doc.images():
        path = image.path.resolve()
        if path.is_relative_to(root) and path.is_file():
            allowed[image.src] = path
    return allowed
