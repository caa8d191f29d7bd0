"""Dead code in the service's core packages (vulture), for scripts/test.

Usages are looked up everywhere (src, tests, worker.py), but only findings inside the core
packages fail the check, so work in progress elsewhere is not blocked. Names vulture cannot
see being used (framework hooks, columns only written, protocol parameters) are listed, each
with its reason, in scripts/vulture_allowlist.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

from vulture import Vulture

ROOT = Path(__file__).resolve().parent.parent
CORE = ("content", "render", "delivery", "channels", "subscribers", "web", "wechat")
SCANNED = ["src/dispatch", "tests", "worker.py", "scripts/vulture_allowlist.py"]
IGNORE_DECORATORS = [
    "@*.command",
    "@*.group",
    "@router.*",
    "@app.*",
    "@*.connect",
    "@*.exception_handler",
    "@*.middleware",
    "@pytest.fixture",
    "@*.task",
    "@field_validator",
    "@model_validator",
]
IGNORE_NAMES = ["do_GET", "do_POST", "do_HEAD", "log_message", "handle_*", "test_*"]


def core_findings() -> list[str]:
    vulture = Vulture(ignore_names=IGNORE_NAMES, ignore_decorators=IGNORE_DECORATORS)
    vulture.scavenge([str(ROOT / p) for p in SCANNED], exclude=["*/migrations/*"])
    core = tuple(str(ROOT / "src" / "dispatch" / package) + "/" for package in CORE)
    return [
        item.get_report()
        for item in vulture.get_unused_code(min_confidence=60)
        # attributes only written are mostly ORM columns read back through SQL: not reported
        if item.typ != "attribute" and str(item.filename).startswith(core)
    ]


if __name__ == "__main__":
    found = core_findings()
    for line in found:
        print(line)
    if found:
        print(
            f"{len(found)} unused name(s) in the core packages: remove them, or allow-list one "
            "with its reason in scripts/vulture_allowlist.py",
            file=sys.stderr,
        )
    sys.exit(1 if found else 0)
