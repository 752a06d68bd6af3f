"""Access records by group commit: an answer is given only once its record is committed,
concurrent requests share commits, and a gateway whose database is away gives no whole answer
without a record (503 before anything was sent, a cut connection mid-stream)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url
from structlog.testing import capture_logs

from gateway.access import SUBJECT, AccessLog, PostgresWriter, envelope
from gateway.config import RateRule
from gateway.events import AccessRecorded
from gateway.models import outbox
from gateway.state import GatewayState
from shared.events import CloudEvent
from tests.gateway.gateway_support import assert_problem, running_gateway, serve
from tests.gateway.test_gateway_edge import _migrated
from tests.gateway.test_gateway_proxy import BIG, FakePart
from tests.servers import psql, temporary_databases

pytestmark = [pytest.mark.pg]

UNLIMITED = {"rate_public": RateRule(rate=10_000, burst=10_000)}  # the bursts here are not what is tested


@pytest_asyncio.fixture(scope="module")
async def part_url() -> AsyncIterator[str]:
    async with serve(FakePart(), lifespan="off") as url:
        yield url


def access_log(app: Any) -> AccessLog:
    return GatewayState.of(app.state.runtime).access


def dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(False)


async def outbox_records(url: str) -> list[tuple[bytes, CloudEvent]]:
    """(body, event) of every access record in the gateway's outbox, in id order."""
    connection = await asyncpg.connect(dsn(url))
    try:
        rows = await connection.fetch("SELECT id, body FROM outbox WHERE aggregate = $1 ORDER BY id", SUBJECT)
    finally:
        await connection.close()
    return [(row["body"], CloudEvent.from_bytes(row["body"])) for row in rows]


async def test_concurrent_requests_share_commits_and_each_answer_has_its_record(tmp_path: Path, part_url: str) -> None:
    with temporary_databases(["gateway"]) as urls:
        async with (
            running_gateway(tmp_path, {"intake": part_url}, database_url=urls["gateway"], **UNLIMITED) as (url, app),
            httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=60)) as client,
        ):
            log = access_log(app)
            # a lone request, the gateway idle: written at once, in a commit of its own
            alone = await client.get("/api/intake/echo", headers={"X-Request-ID": "mot-minh"})
            assert alone.status_code == 200
            assert (log.commits, log.written) == (1, 1)
            assert [e.requestid for _, e in await outbox_records(urls["gateway"])] == ["mot-minh"]

            # another writer (a second gateway process, say) holds the access log's counter
            # while 50 clients call at once: their answers wait, and then share commits
            ids = [f"cung-luc-{i}" for i in range(50)]
            holder = await asyncpg.connect(dsn(urls["gateway"]))
            try:
                holding = holder.transaction()
                await holding.start()
                await holder.execute("SELECT value FROM counter WHERE key = $1 FOR UPDATE", "event-seq:" + SUBJECT)
                burst = asyncio.gather(*(client.get("/api/intake/echo", headers={"X-Request-ID": i}) for i in ids))
                await asyncio.sleep(1.0)
                assert not burst.done(), "an answer was given before its record was committed"
                await holding.commit()
                answers = await burst
            finally:
                await holder.close()
            assert all(a.status_code == 200 for a in answers), [
                (a.status_code, a.text[:300]) for a in answers if a.status_code != 200
            ][:2]
            assert log.written == 51
            assert 2 <= log.commits - 1 <= 4, log.commits  # the one that waited, and the rest together

            # without a lock in the way the batches are as large as the commits are slow: at
            # least some sharing, whatever the machine's load
            more = [f"tiep-{i}" for i in range(50)]
            before = log.commits
            answers = await asyncio.gather(*(client.get("/api/intake/echo", headers={"X-Request-ID": i}) for i in more))
            assert all(a.status_code == 200 for a in answers), [
                (a.status_code, a.text[:300]) for a in answers if a.status_code != 200
            ][:2]
            print(f"50 concurrent requests, nothing in the way: {log.commits - before} commits")
            assert log.commits - before < 50
            ids += more
            # every answer's record was committed before the answer was given: they are all
            # in the outbox now, without waiting for anything
            records = await outbox_records(urls["gateway"])
        assert {e.requestid for _, e in records} == {"mot-minh", *ids}
        sequences = [int(e.sequence or 0) for _, e in records]
        assert sequences == list(range(1, 102)), "one gap-free sequence, in id order"
        assert {(e.data["status"], e.data["route"]) for _, e in records} == {(200, "/api/intake/echo")}


async def test_database_away_no_whole_answer_without_its_record(
    tmp_path: Path, part_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with temporary_databases(["gateway"]) as urls:
        async with (
            running_gateway(tmp_path, {"intake": part_url}, database_url=urls["gateway"], **UNLIMITED) as (url, app),
            httpx.AsyncClient(base_url=url, timeout=30) as client,
        ):
            assert (await client.get("/api/intake/echo")).status_code == 200
            downloaded = 0
            async with client.stream("GET", "/api/intake/download") as stream:
                async for chunk in stream.aiter_bytes():
                    downloaded += len(chunk)
            assert downloaded == BIG
            assert access_log(app).written == 2

            # the database goes away under the running gateway: its connections are closed and
            # no new one can be opened
            name = make_url(urls["gateway"]).database
            await asyncio.to_thread(psql, f'DROP DATABASE "{name}" WITH (FORCE)')
            caplog.clear()
            with caplog.at_level(logging.INFO), capture_logs() as events:
                # nothing was sent yet: a 503 problem in place of the part's answer
                refused = await client.get("/api/intake/echo")
                assert_problem(refused, 503, "access_not_recorded")
                assert refused.headers["retry-after"] == "1"
                assert refused.headers["x-content-type-options"] == "nosniff"
                assert "x-upstream" not in refused.headers  # nothing of the part's answer
                # streamed, chunked or with its length: what is out stays out, but the answer
                # never completes
                for path in ("/api/intake/download", "/api/intake/download-sized"):
                    received = 0
                    with pytest.raises(httpx.HTTPError):
                        async with client.stream("GET", path) as stream:
                            async for chunk in stream.aiter_bytes():
                                received += len(chunk)
                    assert 0 < received < BIG, path
                assert access_log(app).written == 2
            # the cut is deliberate and handled: named in the log, no traceback anywhere
            cuts = [e for e in events if e["event"] == "access_record_not_written_stream_cut"]
            assert len(cuts) == 2, events
            assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]


async def test_two_gateway_processes_write_one_gap_free_sequence_in_id_order() -> None:
    """Two access logs on one database (two gateway processes, each its own connection) commit
    concurrently: the records form one sequence without gaps or repeats, numbered in the order
    of the outbox (the relay's publishing order), and each envelope is byte for byte the one the
    CloudEvent model would write."""
    with temporary_databases(["gateway"]) as urls:
        db = await _migrated(urls["gateway"])
        try:
            logs = [AccessLog(PostgresWriter.for_database(db, outbox, lambda: None), batch=50) for _ in range(2)]

            async def calls(n: int) -> None:
                log = logs[n % 2]
                for i in range(40):
                    await log.record(
                        actor=f"nguoi-{n}",
                        roles=["citizen"],
                        agency=None if i % 3 else "000.00.00.H56",
                        client_ip="127.0.0.1",
                        method="GET",
                        route="/api/intake/dossiers",
                        status=200,
                        duration_ms=1.5,
                        request_id=f"r-{n}-{i}",
                    )

            await asyncio.gather(*(calls(n) for n in range(10)))
            assert sum(log.written for log in logs) == 400
            assert all(log.commits < log.written for log in logs)
            for log in logs:
                await log.drain()
            records = await outbox_records(urls["gateway"])
        finally:
            await db.dispose()
    assert [int(e.sequence or 0) for _, e in records] == list(range(1, 401))
    assert len({e.requestid for _, e in records}) == 400
    for body, event in records:
        record = {**AccessRecorded.model_validate(event.data).model_dump(), "at": event.time}
        assert body == envelope(outbox.source, event.id, record, event.sequence or "") == event.to_bytes()
