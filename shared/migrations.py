"""Alembic, one migration tree per part (each with its own version table), run from code.

Tests and the embedded mode build databases by running these migrations, never with
``create_all``, so what runs in production is what the tests ran.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import async_engine_from_config


def alembic_config(script_location: Path, url: str, *, service: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["version_table"] = f"alembic_version_{service}"
    return cfg


# Alembic keeps its migration context in module globals, so two parts migrating at once in one
# process (the embedded mode) would step on each other: one at a time.
_ALEMBIC_LOCK = threading.Lock()


def upgrade(script_location: Path, url: str, *, service: str, revision: str = "head") -> None:
    """Blocking; call from a thread when an event loop is running (env.py starts its own)."""
    with _ALEMBIC_LOCK:
        command.upgrade(alembic_config(script_location, url, service=service), revision)


async def upgrade_async(script_location: Path, url: str, *, service: str) -> None:
    await asyncio.to_thread(upgrade, script_location, url, service=service)


def run_env(metadata: MetaData) -> None:
    """The body of every part's ``migrations/env.py``."""
    config = context.config
    version_table = config.attributes.get("version_table", "alembic_version")
    render_as_batch = config.get_main_option("sqlalchemy.url", "").startswith("sqlite")

    def configure(connection: Connection | None = None, url: str | None = None) -> None:
        context.configure(
            connection=connection,
            url=url,
            target_metadata=metadata,
            version_table=version_table,
            render_as_batch=render_as_batch,
            compare_type=True,
        )

    if context.is_offline_mode():
        configure(url=config.get_main_option("sqlalchemy.url"))
        with context.begin_transaction():
            context.run_migrations()
        return

    def do_run(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            # replicas starting together on an empty database take turns
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock(hashtext('alembic:{version_table}'))")
        configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()

    async def run_async() -> None:
        engine = async_engine_from_config(
            config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
        )
        async with engine.connect() as connection:
            await connection.run_sync(do_run)
            await connection.commit()
        await engine.dispose()

    asyncio.run(run_async())
