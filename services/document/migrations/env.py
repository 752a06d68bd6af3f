"""Alembic environment of the document part."""

from services.document.models import Base
from shared.migrations import run_env

run_env(Base.metadata)
