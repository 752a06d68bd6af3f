"""Alembic environment of the signing part."""

from services.signing.models import Base
from shared.migrations import run_env

run_env(Base.metadata)
