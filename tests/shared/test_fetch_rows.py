"""``shared.db.fetch_rows``, the reads that skip SQLAlchemy's execution layers on PostgreSQL:
the same rows as ``session.execute`` gives (types processed alike), in the session's own
transaction, seeing its pending changes, on PostgreSQL and on SQLite (where it is
``session.execute``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import JSON, BigInteger, Float, Numeric, String, bindparam, select
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import (
    Database,
    ServiceBase,
    UtcDateTime,
    among,
    counter_table,
    execute_rows,
    fetch_rows,
    new_metadata,
    next_value,
    next_values,
    session_scope,
)
from tests.servers import temporary_databases

pytestmark = pytest.mark.pg


class Base(ServiceBase):
    __abstract__ = True
    metadata = new_metadata()


class Item(Base):
    __tablename__ = "item"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(50))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    amount: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    ratio: Mapped[float] = mapped_column(Float)


COUNTERS = counter_table(Base.metadata)
T = Item.__table__.c
BY_ID = select(T.id, T.name, T.at, T.data, T.amount, T.ratio, (T.ratio > 0.5).label("high")).where(
    T.id == bindparam("id")
)
AMONG = select(T.id).where(among(T.id, "ids")).order_by(T.id)
AMONG_NAMES = select(T.name).where(among(T.id, "ids")).order_by(T.id)
ICT = timezone(timedelta(hours=7))


def item(id_: int, **changes: Any) -> Item:
    fields = {
        "name": f"item {id_}",
        "at": datetime(2026, 12, 4, 9, id_, tzinfo=ICT),
        "data": {"n": id_, "tags": ["a", "ă"], "nested": {"ok": True}} if id_ % 2 else None,
        "amount": Decimal(f"{id_}.25"),
        "ratio": id_ / 10,
    }
    return Item(id=id_, **{**fields, **changes})


@pytest.fixture(params=["postgresql", "sqlite"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        db = Database(f"sqlite+aiosqlite:///{tmp_path}/rows.sqlite")
        async with db.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        yield db
        await db.dispose()
        return
    with temporary_databases(["rows"]) as urls:
        db = Database(urls["rows"], pool_size=2)
        async with db.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        yield db
        await db.dispose()


async def seeded(db: Database, n: int = 9) -> None:
    async with session_scope(db) as session:
        session.add_all([item(i) for i in range(1, n + 1)])


async def by_sqlalchemy(session: Any, statement: Any, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    result = await session.execute(statement, params)
    return [dict(row) for row in result.mappings()]


async def test_the_rows_are_those_sqlalchemy_gives_with_every_type_processed(database: Database) -> None:
    await seeded(database)
    async with session_scope(database, read_only=True) as session:
        for id_ in (1, 2):  # with JSON and with NULL JSON
            fast = await fetch_rows(session, BY_ID, {"id": id_})
            assert fast == await by_sqlalchemy(session, BY_ID, {"id": id_})
            [row] = fast
            assert list(row) == ["id", "name", "at", "data", "amount", "ratio", "high"]
            assert row["at"] == datetime(2026, 12, 4, 2, id_, tzinfo=UTC)
            assert row["at"].utcoffset() == timedelta(0)  # UtcDateTime's result processing ran
            assert row["amount"] == Decimal(f"{id_}.25") and isinstance(row["amount"], Decimal)
            assert isinstance(row["ratio"], float) and row["high"] is False
        assert (await fetch_rows(session, BY_ID, {"id": 1}))[0]["data"] == {
            "n": 1,
            "tags": ["a", "ă"],
            "nested": {"ok": True},
        }
        assert await fetch_rows(session, BY_ID, {"id": 404}) == []


async def test_among_takes_lists_of_any_length_in_one_statement(database: Database) -> None:
    await seeded(database)
    async with session_scope(database, read_only=True) as session:
        for ids in ([3], [9, 1, 5], list(range(1, 60)), []):
            rows = await fetch_rows(session, AMONG, {"ids": ids})
            assert [r["id"] for r in rows] == sorted(i for i in ids if 1 <= i <= 9)
            assert rows == await by_sqlalchemy(session, AMONG, {"ids": ids})


async def test_statements_of_one_shape_built_per_request_each_give_their_own_values(database: Database) -> None:
    """A filter built per request (literal values in the statement) shares its compiled form
    with the other statements of its shape, never their values."""
    await seeded(database)
    async with session_scope(database, read_only=True) as session:
        for low, high in ((2, 4), (6, 9), (1, 1)):
            statement = select(T.id).where(T.id >= low, T.id <= high, T.name.startswith("item")).order_by(T.id)
            assert [r["id"] for r in await fetch_rows(session, statement)] == list(range(low, high + 1))


BY_ID_ORM = select(Item.id, Item.name).where(Item.id == bindparam("id"))


async def test_a_read_flushes_pending_changes_exactly_where_session_execute_does(database: Database) -> None:
    """Statements naming mapped attributes autoflush; statements of table columns only do not
    (``session.execute``'s own rule), so a read answers alike on both databases."""
    await seeded(database, n=3)
    async with session_scope(database) as session:
        changed = await session.get(Item, 2)
        assert changed is not None
        changed.name = "renamed"
        assert (await fetch_rows(session, BY_ID, {"id": 2}))[0]["name"] == "item 2"
        assert (await by_sqlalchemy(session, BY_ID, {"id": 2}))[0]["name"] == "item 2"
        assert (await fetch_rows(session, BY_ID_ORM, {"id": 2}))[0]["name"] == "renamed"
        session.add(item(7))
        assert await fetch_rows(session, BY_ID, {"id": 7}) == []
        assert await fetch_rows(session, BY_ID_ORM, {"id": 7}) == [{"id": 7, "name": "item 7"}]
        # flushed, not committed: this transaction reads it, another does not
        assert [r["id"] for r in await fetch_rows(session, AMONG, {"ids": [2, 7]})] == [2, 7]
        async with session_scope(database, read_only=True) as other:
            assert (await fetch_rows(other, BY_ID, {"id": 2}))[0]["name"] == "item 2"
            assert await fetch_rows(other, BY_ID, {"id": 7}) == []
    async with session_scope(database, read_only=True) as session:
        assert (await fetch_rows(session, BY_ID, {"id": 2}))[0]["name"] == "renamed"


async def test_a_rolled_back_write_is_not_read_after_it_in_the_same_session(database: Database) -> None:
    """The session's next transaction reads through its own connection, not the one before."""
    await seeded(database, n=3)
    async with database.sessionmaker() as session:
        session.add(item(8))
        await session.flush()
        assert len(await fetch_rows(session, BY_ID, {"id": 8})) == 1
        await session.rollback()
        assert await fetch_rows(session, BY_ID, {"id": 8}) == []
        session.add(item(8, name="again"))
        await session.commit()
        assert (await fetch_rows(session, BY_ID, {"id": 8}))[0]["name"] == "again"
        await session.commit()


INSERT_RETURNING = Item.__table__.insert().returning(T.id, T.at)
INSERT = Item.__table__.insert()
RENAME = Item.__table__.update().where(T.id == bindparam("item_id")).values(name=bindparam("new_name"))


def item_row(id_: int) -> dict[str, Any]:
    return {"id": id_, "name": f"row {id_}", "at": datetime(2026, 12, 4, tzinfo=ICT), "data": None,
            "amount": Decimal("1.00"), "ratio": 0.5}  # fmt: skip


async def test_writes_are_part_of_the_session_transaction_whichever_statement_begins_it(database: Database) -> None:
    """A write as the transaction's first statement, then writes on the asyncpg connection: a
    rollback takes every one of them back, a commit keeps them all."""
    for commit in (False, True):
        async with database.sessionmaker() as session:
            [first] = await execute_rows(session, INSERT_RETURNING, item_row(1))
            assert first == {"id": 1, "at": datetime(2026, 12, 3, 17, tzinfo=UTC)}
            assert await execute_rows(session, INSERT, [item_row(2), item_row(3)]) == []
            assert await execute_rows(session, RENAME, {"item_id": 3, "new_name": "renamed"}) == []
            assert [r["name"] for r in await fetch_rows(session, AMONG_NAMES, {"ids": [1, 2, 3]})] == [
                "row 1",
                "row 2",
                "renamed",
            ]
            async with database.read_sessionmaker() as other:  # nothing is seen outside before the commit
                assert await fetch_rows(other, AMONG, {"ids": [1, 2, 3]}) == []
            await (session.commit() if commit else session.rollback())
        async with session_scope(database, read_only=True) as session:
            assert len(await fetch_rows(session, AMONG, {"ids": [1, 2, 3]})) == (3 if commit else 0)


async def test_counters_stay_gap_free_when_a_transaction_rolls_back(database: Database) -> None:
    counters = COUNTERS
    async with database.sessionmaker() as session:
        await execute_rows(session, INSERT, item_row(1))  # the transaction has begun
        assert [await next_value(session, counters, "k") for _ in range(2)] == [1, 2]
        assert list(await next_values(session, counters, "k", 3)) == [3, 4, 5]
        await session.rollback()
    async with session_scope(database) as session:
        assert await next_value(session, counters, "k") == 1
        assert list(await next_values(session, counters, "k", 2)) == [2, 3]
