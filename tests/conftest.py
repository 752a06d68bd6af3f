"""Test-wide settings: quiet logs, and the encodings every test assumes."""

from __future__ import annotations

import os

os.environ.setdefault("LIENTHONG_LOG_JSON", "false")
os.environ.setdefault("LIENTHONG_LOG_LEVEL", "WARNING")
os.environ.setdefault("PYTHONUTF8", "1")
