"""The connection pool on PostgreSQL: no churn under load, and a restarted server costs nothing
to a request that arrives after it."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from shared import clock
from shared import db as shared_db
from shared.db import Database
from tests.servers import psql, temporary_databases

pytestmark = pytest.mark.pg


async def _backend(database: Database, hold: float = 0.0) -> int:
    async with database.sessionmaker() as session:
        pid = (await session.execute(text("select pg_backend_pid()"))).scalar_one()
        await asyncio.sleep(hold)
        await session.commit()
        return int(pid)


async def test_more_requests_than_connections_wait_for_one_instead_of_opening_more() -> None:
    """Every request of a burst four times the pool's size is served by the pool's own
    connections: none opened for one request and closed after it (that churn cost a part more
    CPU than its small requests)."""
    with temporary_databases(["pool"]) as urls:
        database = Database(urls["pool"], pool_size=5)
        try:
            first = await asyncio.gather(*(_backend(database, hold=0.05) for _ in range(20)))
            second = await asyncio.gather(*(_backend(database, hold=0.05) for _ in range(20)))
        finally:
            await database.dispose()
    assert len(set(first)) <= 5
    assert set(second) <= set(first)  # the same backends again: nothing was closed and reopened


async def test_connections_killed_while_idle_are_replaced_before_a_request_gets_them() -> None:
    """PostgreSQL restarted (every backend of the database terminated) while the pool sat
    idle: the next requests all succeed, on new connections."""
    with temporary_databases(["restart"]) as urls:
        database = Database(urls["restart"], pool_size=3)
        name = urls["restart"].rsplit("/", 1)[1]
        try:
            before = set(await asyncio.gather(*(_backend(database, hold=0.05) for _ in range(3))))
            psql(f"select pg_terminate_backend(pid) from pg_stat_activity where datname = '{name}'")
            with clock.advanced(shared_db.PING_AFTER_IDLE_SECONDS + 0.2):
                after = await asyncio.gather(*(_backend(database) for _ in range(6)))
        finally:
            await database.dispose()
    assert not set(after) & before


async def test_a_connection_in_steady_use_is_not_pinged(monkeypatch: pytest.MonkeyPatch) -> None:
    """Within the idle window a checkout costs no round trip; after it, one ping."""
    with temporary_databases(["ping"]) as urls:
        database = Database(urls["ping"], pool_size=1)
        pings = 0
        try:
            await _backend(database)  # the connection exists and has been handed back once
            async with database.engine.connect() as connection:
                raw = await connection.get_raw_connection()
                adapted = raw.dbapi_connection
                assert adapted is not None
                original = type(adapted).ping

                def counting_ping(self) -> None:  # type: ignore[no-untyped-def]
                    nonlocal pings
                    pings += 1
                    original(self)

                monkeypatch.setattr(type(adapted), "ping", counting_ping)
            for _ in range(5):
                await _backend(database)
            assert pings == 0
            with clock.advanced(shared_db.PING_AFTER_IDLE_SECONDS + 0.1):
                await _backend(database)
            assert pings == 1
        finally:
            await database.dispose()
