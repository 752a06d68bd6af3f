"""Database access shared by every part: the async engine, one session per request, counters.

Service code only ``flush()``es; the request's session dependency commits when the endpoint
returns and rolls back when it raises, so a request is one transaction and a half-written
record cannot survive an error.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from sqlalchemy import (
    ARRAY,
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    LargeBinary,
    MetaData,
    String,
    Table,
    TypeDecorator,
    any_,
    bindparam,
    cast,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.dml import Insert, UpdateBase
from sqlalchemy.sql.expression import ColumnElement, FunctionElement

from shared import clock

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


def make_engine(url: str, *, pool_size: int = 20) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        _make_sqlite_serialisable(engine)
        return engine
    # No overflow: connections above the pool's size would be opened for one request and
    # closed after it, and under a steady load that churn (a PostgreSQL backend started and
    # an asyncpg handshake per request) cost a part more CPU than the requests themselves.
    # A request that finds every connection busy waits for one instead (pool_timeout).
    engine = create_async_engine(url, pool_size=pool_size, max_overflow=0, pool_recycle=1800)
    _ping_when_idle(engine)
    return engine


# A connection handed back less than this long ago is not pinged again (HikariCP's
# "aliveBypassWindow" idea): SQLAlchemy's pool_pre_ping costs three round trips on asyncpg
# (BEGIN, ";", ROLLBACK) on every checkout, about a tenth of a small request's CPU.
PING_AFTER_IDLE_SECONDS = 0.5


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Pessimistic disconnect handling for connections that sat idle: a connection that fails
    its ping is thrown away and the pool hands out another (SQLAlchemy retries a checkout that
    raises ``DisconnectionError``), so a PostgreSQL restart costs no request that arrives after
    it. A connection that breaks during a burst is caught by SQLAlchemy's own disconnect
    detection, which invalidates the pool."""

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["returned_at"] = clock.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned_at = record.info.get("returned_at")
        if returned_at is None or clock.monotonic() - returned_at < PING_AFTER_IDLE_SECONDS:
            return  # new, or in use a moment ago
        try:
            dbapi_connection.ping()
        except Exception as exc:
            raise DisconnectionError(f"idle connection failed its ping: {exc!r}") from exc


# The execution option that marks a read-only unit of work (``Database.read_sessionmaker``).
READ_ONLY = "lienthong_read_only"


def _make_sqlite_serialisable(engine: AsyncEngine) -> None:
    # SQLite upgrades a read transaction to a write lock lazily and then fails at once with
    # "database is locked" when another writer got there first. Taking the write lock at BEGIN
    # (BEGIN IMMEDIATE) makes concurrent writers queue on busy_timeout instead. A read-only unit
    # of work (a GET request) begins a plain deferred transaction: in WAL mode it reads its
    # snapshot beside the writer and never waits for, nor blocks, the write lock.
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
        options = conn.get_execution_options()
        # autocommit connections (health pings) must not queue behind writers
        if options.get("isolation_level") == "AUTOCOMMIT":
            return
        conn.exec_driver_sql("BEGIN" if options.get(READ_ONLY) else "BEGIN IMMEDIATE")


class CommitSignal:
    """Something a transaction asks for once it has committed: wake the outbox relay, the
    delivery worker, reload a cache. ``signal.mark(session)`` inside the transaction; the hooks
    given to :meth:`Database.on_commit` for that signal run after the session's next commit.
    The signal itself is the key in ``session.info``, so a misspelt one is a NameError instead
    of never firing."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"CommitSignal({self.name!r})"

    def mark(self, session: AsyncSession | Session) -> None:
        session.info[self] = True


class Database:
    """One part's engine and session factory."""

    def __init__(self, url: str, *, pool_size: int = 20) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size)
        # A Session class of our own, so the after-commit hook sees only this part's sessions.
        sync_session_class = type("PartSession", (Session,), {})
        self.sessionmaker = async_sessionmaker(
            self.engine, expire_on_commit=False, sync_session_class=sync_session_class
        )
        # for units of work that only read (GET requests): on SQLite no write lock is taken; on
        # PostgreSQL the same as ``sessionmaker``
        self.read_sessionmaker = async_sessionmaker(
            self.engine.execution_options(**{READ_ONLY: True}),
            expire_on_commit=False,
            sync_session_class=sync_session_class,
        )
        self._after_commit_hooks: dict[CommitSignal, list[Callable[[], None]]] = {}
        event.listen(sync_session_class, "after_commit", self._after_commit)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def on_commit(self, signal: CommitSignal, hook: Callable[[], None]) -> None:
        """Call ``hook`` after every commit of this part's sessions that marked ``signal``."""
        self._after_commit_hooks.setdefault(signal, []).append(hook)

    def _after_commit(self, session: Session) -> None:
        for signal, hooks in self._after_commit_hooks.items():
            if session.info.pop(signal, False):
                for hook in hooks:
                    hook()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("SELECT 1")

    async def dispose(self) -> None:
        await self.engine.dispose()


# Methods that change nothing (RFC 9110 "safe"): their request's transaction only reads.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@asynccontextmanager
async def session_scope(db: Database, *, read_only: bool = False) -> AsyncIterator[AsyncSession]:
    """A unit of work: commit on success, roll back on any exception. ``read_only``: it only
    reads (on SQLite it then takes no write lock; a write in it may fail as "database is locked")."""
    async with (db.read_sessionmaker if read_only else db.sessionmaker)() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """FastAPI dependency: the request's session. Use with ``Depends(..., scope="function")``
    so the commit happens before the response is sent, never after. A GET's transaction is
    read-only: it takes no write lock on SQLite."""
    async with session_scope(request.app.state.runtime.db, read_only=request.method in SAFE_METHODS) as session:
        yield session


@dataclass
class _DriverStatement:
    """A statement compiled for asyncpg: its SQL, its bind parameters in ``$n`` order with their
    types' bind processors, and its result columns' keys with their types (whose result
    processors need the column's type oid, known once the statement is prepared)."""

    sql: str
    compiled: Any
    names: tuple[str, ...]
    binds: tuple[Callable[[Any], Any] | None, ...]
    keys: tuple[str, ...]
    types: tuple[Any, ...]
    processors: tuple[tuple[int, Callable[[Any], Any]], ...] | None = None


# compiled statements by the statement's cache key and the columns a write gives (bounded: a
# dynamic filter makes a new shape); None for one that SQLAlchemy must run
_DRIVER_STATEMENTS: dict[Any, _DriverStatement | None] = {}
_DRIVER_STATEMENTS_MAX = 500


def _driver_statement(
    statement: Executable, cache_key: Any, dialect: Any, *, column_keys: list[str] | None, many: bool
) -> _DriverStatement | None:
    # compiled with its cache key, so that another statement of the same shape gives its own
    # values (``construct_params(extracted_parameters=…)``), as SQLAlchemy's own cache does
    compiled = statement.compile(dialect=dialect, cache_key=cache_key, column_keys=column_keys, for_executemany=many)
    sql = compiled.string
    result_columns = getattr(compiled, "_result_columns", None) or []
    if (
        "__[POSTCOMPILE_" in sql  # an expanding IN: use ``among``
        or compiled.positiontup is None
        or getattr(compiled, "insert_prefetch", None)  # defaults computed in Python at execution
        or getattr(compiled, "update_prefetch", None)
        or (many and result_columns)
        or (not result_columns and not compiled.isinsert and not compiled.isupdate and not compiled.isdelete)
    ):
        return None
    binds = tuple(compiled.binds[n].type._cached_bind_processor(dialect) for n in compiled.positiontup)
    return _DriverStatement(
        sql=sql,
        compiled=compiled,
        names=tuple(compiled.positiontup),
        binds=binds,
        keys=tuple(c.keyname for c in result_columns),
        types=tuple(c.type for c in result_columns),
    )


def _compiled_for_driver(
    session: AsyncSession, statement: Executable, params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None
) -> tuple[_DriverStatement, Any] | None:
    """The statement compiled for the session's asyncpg connection, and its cache key; None
    where SQLAlchemy runs it (another database or driver, or a statement it must run itself)."""
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql" or dialect.driver != "asyncpg":
        return None
    cache_key = statement._generate_cache_key()  # type: ignore[attr-defined]
    if cache_key is None:
        return None
    many = isinstance(params, Sequence)
    writes = isinstance(statement, UpdateBase)
    column_keys = sorted((params[0] if many else params) or {}) if writes and params else None  # type: ignore[index]
    key = (cache_key.key, tuple(column_keys) if column_keys is not None else None, many)
    if key not in _DRIVER_STATEMENTS:
        if len(_DRIVER_STATEMENTS) >= _DRIVER_STATEMENTS_MAX:
            _DRIVER_STATEMENTS.clear()
        _DRIVER_STATEMENTS[key] = _driver_statement(statement, cache_key, dialect, column_keys=column_keys, many=many)
    known = _DRIVER_STATEMENTS[key]
    return None if known is None else (known, cache_key)


def _driver_args(known: _DriverStatement, cache_key: Any, params: Mapping[str, Any] | None) -> list[Any]:
    values = known.compiled.construct_params(params, extracted_parameters=cache_key.bindparams)
    return [
        value if process is None else process(value)
        for value, process in zip((values[n] for n in known.names), known.binds, strict=True)
    ]


async def _driver_rows(
    session: AsyncSession, connection: Any, known: _DriverStatement, args: list[Any]
) -> list[dict[str, Any]]:
    if known.processors is None:
        # the result processors depend on the columns' type oids: ask PostgreSQL once
        prepared = await connection.prepare(known.sql)
        oids = [attribute.type.oid for attribute in prepared.get_attributes()]
        dialect = session.get_bind().dialect
        known.processors = tuple(
            (i, process)
            for i, (type_, oid) in enumerate(zip(known.types, oids, strict=True))
            if (process := type_._cached_result_processor(dialect, oid)) is not None
        )
    keys, processors = known.keys, known.processors
    records = await connection.fetch(known.sql, *args)
    if not processors:
        return [dict(zip(keys, record, strict=True)) for record in records]
    rows = []
    for record in records:
        values = list(record)
        for i, process in processors:
            values[i] = process(values[i])
        rows.append(dict(zip(keys, values, strict=True)))
    return rows


async def fetch_rows(
    session: AsyncSession, statement: Executable, params: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The rows of a SELECT as plain dicts keyed as ``result.keys()`` names them, with the same
    values SQLAlchemy gives (its types' bind and result processors applied), in the session's
    transaction; the session's pending changes flushed first where ``session.execute`` would
    (a statement naming mapped classes' attributes, not one of tables' columns only).

    On PostgreSQL the statement is compiled once and run on the session's asyncpg connection
    itself: SQLAlchemy's execution layers (the ORM's compile state, the DBAPI adapter, a
    greenlet switch, the result object) cost three times what asyncpg does for the same read,
    more than anything else a small request does. A read made before the request's first write
    runs outside a transaction, which at PostgreSQL's READ COMMITTED sees what a statement in
    one would; so it must not lock rows (``FOR UPDATE`` goes through ``session.execute``).
    Elsewhere (SQLite) it is ``session.execute``."""
    found = _compiled_for_driver(session, statement, params)
    if found is None:
        return await _rows_by_sqlalchemy(session, statement, params)
    known, cache_key = found
    args = _driver_args(known, cache_key, params)
    if (
        statement._propagate_attrs.get("compile_state_plugin") == "orm"
        and session.sync_session.autoflush
        and (session.new or session.deleted or session.dirty)
    ):
        await session.flush()
    return await _driver_rows(session, await _driver_connection(session), known, args)


async def execute_rows(
    session: AsyncSession,
    statement: Executable,
    params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Run a statement that writes (an INSERT, UPDATE or DELETE of tables' columns, a text
    statement, a SELECT whose CTEs write) in the session's transaction, and give the rows it
    returns (``RETURNING``) as :func:`fetch_rows` does; a list of parameter sets runs it once
    for each (returning nothing). Like ``session.execute`` with a Core statement, it does not
    flush the session's pending ORM changes.

    On PostgreSQL, once the transaction has begun (the request's first statement through
    SQLAlchemy begins it), the statement runs on the session's asyncpg connection, compiled
    once; before that, and for a statement whose column defaults SQLAlchemy computes as it
    runs, and elsewhere (SQLite), it is ``session.execute``."""
    found = _compiled_for_driver(session, statement, params)
    connection = await _driver_connection(session) if found is not None else None
    if found is None or not connection.is_in_transaction():
        return await _rows_by_sqlalchemy(session, statement, params)
    known, cache_key = found
    if isinstance(params, Sequence):
        await connection.executemany(known.sql, [_driver_args(known, cache_key, p) for p in params])
        return []
    args = _driver_args(known, cache_key, params)
    if not known.keys:
        await connection.execute(known.sql, *args)
        return []
    return await _driver_rows(session, connection, known, args)


# where a session keeps its transaction's asyncpg connection (``session.info`` outlives transactions)
_DRIVER_CONNECTION = "lienthong_driver_connection"


async def _driver_connection(session: AsyncSession) -> Any:
    """The asyncpg connection of the session's transaction (begun if none is), asked of
    SQLAlchemy once per transaction: each ask is two greenlet round trips."""
    transaction = session.sync_session.get_transaction()
    kept = session.info.get(_DRIVER_CONNECTION)
    if transaction is not None and kept is not None and kept[0] is transaction:
        return kept[1]
    connection = (await (await session.connection()).get_raw_connection()).driver_connection
    session.info[_DRIVER_CONNECTION] = (session.sync_session.get_transaction(), connection)
    return connection


async def _rows_by_sqlalchemy(
    session: AsyncSession,
    statement: Executable,
    params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
) -> list[dict[str, Any]]:
    result = await session.execute(statement, params)
    # a write without RETURNING has no rows; an ORM SELECT's result does not say, it always has
    if not getattr(result, "returns_rows", True):
        return []
    keys = list(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result]


class among(FunctionElement[bool]):
    """``column IN (the list given as parameter name)``: on PostgreSQL ``column = ANY($n)``
    with the list as one array parameter, so that the statement's text does not change with the
    list's length (asyncpg prepares it once; :func:`fetch_rows` runs it); elsewhere an
    expanding ``IN``."""

    inherit_cache = True
    name = "among"
    type = Boolean()

    def __init__(self, column: ColumnElement[Any], name: str) -> None:
        super().__init__(column, bindparam(name, type_=column.type))


@compiles(among)
def _among(element: among, compiler: Any, **kw: Any) -> str:
    column, parameter = element.clauses
    return compiler.process(column.in_(bindparam(parameter.key, expanding=True, type_=column.type)), **kw)


@compiles(among, "postgresql")
def _among_postgresql(element: among, compiler: Any, **kw: Any) -> str:
    column, parameter = element.clauses
    return compiler.process(column == any_(bindparam(parameter.key, type_=ARRAY(column.type))), **kw)


class _InsertIgnoringDuplicates(Insert):
    # The dialects' own ``on_conflict_do_nothing()`` opts out of SQLAlchemy's statement cache, so
    # it was compiled anew on every execution (inboxes run it once per event). The same words
    # are valid in PostgreSQL and SQLite; as a text clause they are part of the cache key.
    inherit_cache = True
    _post_values_clause = text("ON CONFLICT DO NOTHING")


def insert_ignoring_duplicates(table: Table, *, on: Sequence[Column[Any]] = ()) -> Any:
    """``INSERT … ON CONFLICT DO NOTHING``, the same in PostgreSQL and SQLite, compiled once per
    shape. ``on``: the columns of the one unique constraint whose duplicates are passed over
    (``ON CONFLICT (…) DO NOTHING``); a row breaking another constraint still fails."""
    statement = _InsertIgnoringDuplicates(table)
    if on:
        columns = ", ".join(f'"{c.name}"' for c in on)
        statement._post_values_clause = text(f"ON CONFLICT ({columns}) DO NOTHING")
    return statement


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
    [row] = await execute_rows(session, counter_bump(counters), {"counter_key": key})
    return int(row["value"])


async def next_values(session: AsyncSession, counters: Table, key: str, count: int) -> range:
    """Take the next ``count`` values of ``key`` at once (one statement, the same lock and
    rollback rules as :func:`next_value`): for a batch of events of one aggregate."""
    [row] = await execute_rows(session, _bump_by(counters), {"counter_key": key, "count": count})
    last = int(row["value"])
    return range(last - count + 1, last + 1)


@functools.cache
def _bump_by(counters: Table) -> Any:
    name = counters.name
    return text(
        f"INSERT INTO {name} (key, value) VALUES (:counter_key, :count) "
        f"ON CONFLICT (key) DO UPDATE SET value = {name}.value + :count RETURNING {name}.value"
    ).columns(value=BigInteger)


@functools.cache
def counter_bump(counters: Table) -> Any:
    """The upsert behind :func:`next_value` (the same words in PostgreSQL and SQLite), built once
    with the key as the parameter ``counter_key``, giving the value taken (``value``); as a CTE it
    takes a value inside a larger statement (``CodeCounter``, ``Outbox.emit``). Text, so that
    SQLAlchemy caches its compiled form: the dialects' ``on_conflict_do_update()`` opts out of
    the statement cache."""
    name = counters.name
    return text(
        f"INSERT INTO {name} (key, value) VALUES (:counter_key, 1) "
        f"ON CONFLICT (key) DO UPDATE SET value = {name}.value + 1 RETURNING {name}.value"
    ).columns(value=BigInteger)


class replace_in(FunctionElement[Any]):
    """``expr`` with every ``old`` in its text replaced by ``new``, of the same type: text, JSON,
    or bytes holding UTF-8 text such as an event's body."""

    inherit_cache = True
    name = "replace_in"

    def __init__(self, expr: ColumnElement[Any], old: ColumnElement[str], new: ColumnElement[str]) -> None:
        super().__init__(expr, old, new)
        self.type = expr.type


@compiles(replace_in)
def _replace_in(element: replace_in, compiler: Any, **kw: Any) -> str:
    # SQLite keeps JSON as text; a BLOB cast to TEXT is read as UTF-8
    expr, old, new = (compiler.process(clause, **kw) for clause in element.clauses)
    if isinstance(element.type, LargeBinary):
        return f"CAST(replace(CAST({expr} AS TEXT), {old}, {new}) AS BLOB)"
    return f"replace({expr}, {old}, {new})"


@compiles(replace_in, "postgresql")
def _replace_in_postgresql(element: replace_in, compiler: Any, **kw: Any) -> str:
    expr, old, new = (compiler.process(clause, **kw) for clause in element.clauses)
    if isinstance(element.type, LargeBinary):
        return f"convert_to(replace(convert_from({expr}, 'UTF8'), {old}, {new}), 'UTF8')"
    if isinstance(element.type, JSON):
        return f"CAST(replace(CAST({expr} AS TEXT), {old}, {new}) AS JSON)"
    return f"replace({expr}, {old}, {new})"


class CodeCounter:
    """Codes made of a prefix and a counter's next value (4 digits or more), taken as the last
    statement of a transaction and written into the rows that carried a stand-in until then.

    The counter's row stays locked until commit (that keeps codes gap-free), and every other
    taker of the same key waits for it. So the rows that will carry the code are written first
    with a stand-in, the code is taken last, and on PostgreSQL the counter's bump and every
    fix-up are one statement: the lock is held for that statement and the commit, nothing else.
    SQLite locks the whole database for the transaction anyway and runs them one by one.

    ``fix_ups(code)`` gives the UPDATE statements that put ``code`` (an SQL expression) in
    place; their own values are bind parameters, given to :meth:`take`. The statements are
    built once, here: building them anew for every code cost more CPU than running them.
    """

    def __init__(self, counters: Table, fix_ups: Callable[[ColumnElement[str]], Sequence[UpdateBase]]) -> None:
        self.counters = counters
        taken = counter_bump(counters).cte("taken")
        number = cast(taken.c.value, String)
        padded = func.lpad(number, func.greatest(4, func.length(number)), "0")
        numbered = select((bindparam("prefix", type_=String) + padded).label("code")).cte("numbered")
        code = select(numbered.c.code).scalar_subquery()
        writes = [statement.cte(f"fix_up_{i}") for i, statement in enumerate(fix_ups(code))]
        self._in_one = select(numbered.c.code).add_cte(*writes)
        self._one_by_one = list(fix_ups(bindparam("new_code", type_=String)))

    async def take(self, session: AsyncSession, *, key: str, prefix: str, **params: Any) -> str:
        """The next code of counter ``key``, written where the fix-ups say (``params`` are theirs)."""
        if session.bind.dialect.name == "postgresql":
            [taken] = await execute_rows(session, self._in_one, {"counter_key": key, "prefix": prefix, **params})
            return str(taken["code"])
        code = f"{prefix}{await next_value(session, self.counters, key):04d}"
        for statement in self._one_by_one:
            await session.execute(statement, {"new_code": code, **params})
        return code


async def peek_value(session: AsyncSession, counters: Table, key: str) -> int:
    value = (await session.execute(select(counters.c.value).where(counters.c.key == key))).scalar()
    return int(value or 0)


__all__ = [
    "CodeCounter",
    "CommitSignal",
    "Database",
    "ServiceBase",
    "UtcDateTime",
    "counter_bump",
    "counter_table",
    "among",
    "execute_rows",
    "fetch_rows",
    "insert",
    "insert_ignoring_duplicates",
    "new_metadata",
    "next_value",
    "next_values",
    "peek_value",
    "replace_in",
    "request_session",
    "session_scope",
    "update",
]
