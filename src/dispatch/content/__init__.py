"""The issue source format: parse, validate and model an issue (see docs/issue-format.md)."""
