"""Every text the console shows, found where it is written: ``_("…")`` in templates and code,
``N_("…")`` for texts translated later (statuses, error titles)."""

from __future__ import annotations

import re
from pathlib import Path

CONSOLE = Path(__file__).resolve().parents[2] / "services" / "console"
MARKED = re.compile(r"""(?<![A-Za-z0-9])N?_\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')\s*[,)]""")


def messages() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted([*CONSOLE.glob("templates/*.html"), *CONSOLE.glob("*.py")]):
        for match in MARKED.finditer(path.read_text(encoding="utf-8")):
            text = match.group(1) if match.group(1) is not None else match.group(2)
            found.setdefault(text.encode().decode("unicode_escape") if "\\" in text else text, []).append(path.name)
    return found
