"""Database access shared by every part: the async engine, one session per request, counters.

Service code only ``flush()``es; the request's session dependency commits when the endpoint
returns and rolls back when it raises, so a request is one transaction and a half-written
record cannot survive an error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    MetaData,
    String,
    Table,
    TypeDecorator,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Session

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp on every database: SQLite forgets the zone, so store UTC and
    give it back as UTC; a naive datetime is refused rather than guessed."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: give a timezone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class ServiceBase(DeclarativeBase):
    """Each part declares ``class Base(ServiceBase): metadata = new_metadata()`` for its own tables."""

    __abstract__ = True
    type_annotation_map = {datetime: UtcDateTime}


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        _make_sqlite_serialisable(engine)
        return engine
    return create_async_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, pool_recycle=1800
    )


def _make_sqlite_serialisable(engine: AsyncEngine) -> None:
    # SQLite upgrades a read transaction to a write lock lazily and then fails at once with
    # "database is locked" when another writer got there first. Taking the write lock at BEGIN
    # (BEGIN IMMEDIATE) makes concurrent requests queue on busy_timeout instead.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # autocommit connections (health pings) must not queue behind writers
        if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            conn.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """One part's engine and session factory."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size)
        # A Session class of our own, so the after-commit hook sees only this part's sessions.
        sync_session_class = type("PartSession", (Session,), {})
        self.sessionmaker = async_sessionmaker(
            self.engine, expire_on_commit=False, sync_session_class=sync_session_class
        )
        self._after_commit_hooks: list[Callable[[], None]] = []
        event.listen(sync_session_class, "after_commit", self._after_commit)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def on_commit_with_events(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` after any commit that wrote outbox rows (wakes the relay at once)."""
        self._after_commit_hooks.append(hook)

    def _after_commit(self, session: Any) -> None:
        if session.info.pop("outbox_pending", False):
            for hook in self._after_commit_hooks:
                hook()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("SELECT 1")

    async def dispose(self) -> None:
        await self.engine.dispose()


@asynccontextmanager
async def session_scope(db: Database) -> AsyncIterator[AsyncSession]:
    """A unit of work: commit on success, roll back on any exception."""
    async with db.sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """FastAPI dependency: the request's session. Use with ``Depends(..., scope="function")``
    so the commit happens before the response is sent, never after."""
    async with session_scope(request.app.state.runtime.db) as session:
        yield session


def insert_ignoring_duplicates(session: AsyncSession, table: Table) -> Any:
    """``INSERT … ON CONFLICT DO NOTHING`` in the session's dialect."""
    if session.bind.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


def counter_table(metadata: MetaData) -> Table:
    """Gap-free counters (dossier codes, document numbers, event sequences) keyed by a string."""
    return Table(
        "counter",
        metadata,
        Column("key", String(200), primary_key=True),
        Column("value", BigInteger, nullable=False),
    )


async def next_value(session: AsyncSession, counters: Table, key: str) -> int:
    """Take the next value of ``key`` inside the caller's transaction.

    The row lock taken by the upsert serialises concurrent takers of the same key until their
    transactions end, and a rolled-back transaction gives its value back: no gaps, no duplicates.
    """
    stmt = next_value_statement(session.bind.dialect.name, counters, key)
    return int((await session.execute(stmt)).scalar_one())


def next_value_statement(dialect: str, counters: Table, key: str) -> Any:
    """The upsert behind :func:`next_value`, for callers that embed it (as a CTE) in a larger
    statement to hold the counter's lock for fewer round trips."""
    ins = postgresql.insert(counters) if dialect == "postgresql" else sqlite.insert(counters)
    return (
        ins.values(key=key, value=1)
        .on_conflict_do_update(index_elements=[counters.c.key], set_={"value": counters.c.value + 1})
        .returning(counters.c.value)
    )


async def peek_value(session: AsyncSession, counters: Table, key: str) -> int:
    value = (await session.execute(select(counters.c.value).where(counters.c.key == key))).scalar()
    return int(value or 0)


__all__ = [
    "Database",
    "ServiceBase",
    "UtcDateTime",
    "counter_table",
    "insert",
    "insert_ignoring_duplicates",
    "new_metadata",
    "next_value",
    "next_value_statement",
    "peek_value",
    "request_session",
    "session_scope",
    "update",
]
