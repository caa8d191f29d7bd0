"""Where the project's own files live, so code finds templates and examples from any cwd."""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parents[1]
TEMPLATES_DIR = PROJECT_ROOT / "templates"
EXAMPLES_DIR = PROJECT_ROOT / "examples"
SAMPLE_ISSUE_DIR = EXAMPLES_DIR / "2023-02"
