"""The manual stays true: the generated reference pages (configuration, metrics) are
fresh, and the README's links lead to files that exist (mkdocs --strict checks the links
inside docs/)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#]+)(#[^)]*)?\)")


def test_the_reference_pages_are_generated_from_the_current_code() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "reference.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_every_relative_link_of_the_readme_leads_to_a_file() -> None:
    text = (ROOT / "README.md").read_text()
    targets = [m.group(1) for m in LINK.finditer(text) if "://" not in m.group(1)]
    assert "docs/architecture.md" in targets
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"
