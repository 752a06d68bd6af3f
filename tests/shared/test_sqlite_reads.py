"""On SQLite a GET request reads beside a writer: its transaction takes no write lock, so it
neither waits for a long write nor holds up the next writer; a POST still queues for the lock."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
from fastapi import Depends, FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import Database, request_session


def app_over(db: Database) -> FastAPI:
    app = FastAPI()
    app.state.runtime = SimpleNamespace(db=db)
    session = Depends(request_session, scope="function")

    @app.get("/count")
    async def count(s: AsyncSession = session) -> int:
        return int((await s.execute(text("SELECT count(*) FROM t"))).scalar_one())

    @app.post("/add")
    async def add(s: AsyncSession = session) -> int:
        await s.execute(text("INSERT INTO t (n) VALUES (1)"))
        return 1

    return app


async def test_a_get_reads_while_a_writer_holds_the_lock(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/reads.sqlite")
    async with db.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (n INTEGER)"))
        await conn.execute(text("INSERT INTO t (n) VALUES (1)"))
    app = app_over(db)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        async with db.sessionmaker() as writer:  # a long write transaction, not committed yet
            await writer.execute(text("INSERT INTO t (n) VALUES (2)"))
            started = time.monotonic()
            response = await client.get("/count")
            assert response.json() == 1  # the committed state, at once
            assert time.monotonic() - started < 2
            # a write request queues behind the writer (busy_timeout), as before
            adding = asyncio.ensure_future(client.post("/add"))
            await asyncio.sleep(0.5)
            assert not adding.done()
            await writer.commit()
        assert (await adding).status_code == 200
        assert (await client.get("/count")).json() == 3
    await db.dispose()
