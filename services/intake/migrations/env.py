"""Alembic environment of the intake part."""

from services.intake.models import Base
from shared.migrations import run_env

run_env(Base.metadata)
