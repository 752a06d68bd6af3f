"""Developer commands that are not part of running the suite (new migration revisions)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command

from shared.migrations import alembic_config

ROOT = Path(__file__).resolve().parent.parent


def migrations_dir(part: str) -> Path:
    return ROOT / ("gateway" if part == "gateway" else f"services/{part}") / "migrations"


def new_revision(part: str, message: str) -> None:
    """Autogenerate a revision against a scratch SQLite database at the current head."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/scratch.sqlite"
        cfg = alembic_config(migrations_dir(part), url, service=part)
        command.upgrade(cfg, "head")
        command.revision(cfg, message=message, autogenerate=True)


if __name__ == "__main__":
    new_revision(sys.argv[1], sys.argv[2])
