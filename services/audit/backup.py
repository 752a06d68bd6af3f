"""Moved to :mod:`lienthong.backup` (``python -m lienthong backup|verify|restore``): backups
cover every part, not audit alone. This name stays so that schedules written for it still run."""

from __future__ import annotations

import sys

from lienthong.backup import *  # noqa: F403 - the old import path keeps working
from lienthong.backup import main

if __name__ == "__main__":
    sys.exit(main())
