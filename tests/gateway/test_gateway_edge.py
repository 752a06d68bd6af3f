"""The edge: rate limits (headers, 429, stricter for the anonymous, shared through the database),
security headers, CORS from configuration, and an access record per request with no secrets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from cloudevents.http import from_json

from gateway.access import SUBJECT, envelope
from gateway.app import create_app
from gateway.config import RateRule
from gateway.events import AccessRecorded
from gateway.models import Base  # noqa: F401 - the tables the migrations build
from gateway.ratelimit import DatabaseLimiter, MemoryLimiter
from shared import clock
from shared.bus import Delivery
from shared.bus.memory import InProcessBroker
from shared.db import Database, new_metadata
from shared.events import BATCH_CONTENT_TYPE, CloudEvent
from shared.migrations import upgrade_async
from shared.outbox import Outbox
from tests.gateway.gateway_support import assert_problem, bearer, gateway_settings, running_gateway, serve, token_for
from tests.gateway.test_gateway_proxy import FakePart
from tests.servers import temporary_databases

SLOW = 0.05  # tokens per second: nothing refills while a test runs


@pytest_asyncio.fixture(scope="module")
async def part_url() -> AsyncIterator[str]:
    async with serve(FakePart(), lifespan="off") as url:
        yield url


async def test_rate_limit_headers_then_429_with_retry_after(tmp_path: Path, part_url: str) -> None:
    async with running_gateway(
        tmp_path,
        {"intake": part_url},
        rate_public=RateRule(rate=SLOW, burst=4),
        rate_client=RateRule(rate=SLOW, burst=5),
        rate_routes={"GET /api/auth/me": RateRule(rate=SLOW, burst=2)},
    ) as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            token = bearer(await token_for(client, "specialist"))  # one of the address's 4
            remaining = []
            for _ in range(3):
                response = await client.get("/api/intake/echo")
                assert response.status_code == 200
                assert response.headers["ratelimit-limit"] == "4"
                remaining.append(int(response.headers["ratelimit-remaining"]))
                assert int(response.headers["ratelimit-reset"]) > 0
            assert remaining == [2, 1, 0]
            refused = await client.get("/api/intake/echo")
            body = assert_problem(refused, 429, "rate_limited")
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.headers["ratelimit-remaining"] == "0"
            assert body["instance"] == "/api/intake/echo"
            # an authenticated client has its own bucket, and a route can be stricter still
            for expected in ("1", "0"):
                response = await client.get("/api/auth/me", headers=token)
                assert response.status_code == 200
                assert response.headers["ratelimit-limit"] == "2"
                assert response.headers["ratelimit-remaining"] == expected
            assert_problem(await client.get("/api/auth/me", headers=token), 429)
            # the refusal took nothing from the client's bucket: 5 - 2 = 3 left
            statuses = [(await client.get("/api/intake/echo", headers=token)).status_code for _ in range(4)]
            assert statuses == [200, 200, 200, 429]


async def test_the_token_endpoint_is_stricter_by_default(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            statuses = []
            for _ in range(12):
                response = await client.post(
                    "/api/auth/token", data={"grant_type": "password", "username": "khong-ai", "password": "doan-bua"}
                )
                statuses.append(response.status_code)
            assert statuses[:10] == [401] * 10
            assert statuses[10:] == [429, 429]


async def _limiter_behaves(limiters: list[Any]) -> None:
    rule = RateRule(rate=SLOW, burst=3)
    outcomes = []
    for i in range(5):
        (decision,) = await limiters[i % len(limiters)].take([("c:someone", rule)])
        outcomes.append((decision.allowed, decision.remaining))
    assert outcomes == [(True, 2), (True, 1), (True, 0), (False, 0), (False, 0)]
    (refused,) = await limiters[0].take([("c:someone", rule)])
    assert refused.retry_after >= 1
    # other keys are other buckets
    (other,) = await limiters[-1].take([("c:someone-else", rule)])
    assert other.allowed and other.remaining == 2
    # the bucket refills at the rule's rate: one token per 1/rate seconds, up to the burst
    with clock.advanced(1 / SLOW):
        (refilled,) = await limiters[-1].take([("c:someone", rule)])
        assert refilled.allowed and refilled.remaining == 0
    with clock.advanced(rule.burst / SLOW + 1 / SLOW):
        full = [(await limiters[0].take([("c:someone", rule)]))[0].allowed for _ in range(4)]
        assert full == [True, True, True, False]


async def test_the_memory_limiter() -> None:
    await _limiter_behaves([MemoryLimiter()])


async def _migrated(url: str) -> Database:
    from gateway.app import MIGRATIONS

    await upgrade_async(MIGRATIONS, url, service="gateway")
    return Database(url)


async def test_the_database_limiter_is_shared_by_replicas_on_sqlite(tmp_path: Path) -> None:
    db = await _migrated(f"sqlite+aiosqlite:///{tmp_path}/gw.sqlite")
    second = Database(db.url)
    try:
        await _limiter_behaves([DatabaseLimiter(db), DatabaseLimiter(second)])
    finally:
        await db.dispose()
        await second.dispose()


@pytest.mark.pg
async def test_the_database_limiter_on_postgresql_admits_exactly_the_burst_under_concurrency() -> None:
    with temporary_databases(["gateway"]) as urls:
        replicas = [await _migrated(urls["gateway"]), Database(urls["gateway"]), Database(urls["gateway"])]
        try:
            limiters = [DatabaseLimiter(db) for db in replicas]
            await _limiter_behaves(limiters)
            rule = RateRule(rate=SLOW, burst=10)
            results = await asyncio.gather(*(limiters[i % 3].take([("c:crowd", rule)]) for i in range(30)))
            assert sum(1 for (d,) in results if d.allowed) == 10
            await limiters[0].prune()
        finally:
            for db in replicas:
                await db.dispose()


async def test_security_headers_everywhere(tmp_path: Path, part_url: str) -> None:
    async with running_gateway(tmp_path, {"intake": part_url}) as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            for path in ("/api/intake/echo", "/api/auth/jwks", "/openapi.json", "/healthz", "/api/nowhere"):
                response = await client.get(path)
                assert response.headers["x-content-type-options"] == "nosniff", path
                assert response.headers["x-frame-options"] == "DENY"
                assert response.headers["referrer-policy"] == "no-referrer"
                assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
                assert "strict-transport-security" not in response.headers  # plain http here
            docs = await client.get("/docs")
            # Swagger UI from local assets: the docs' policy names no other site
            assert docs.status_code == 200 and "https:" not in docs.headers["content-security-policy"]
            assert "script-src 'self'" in docs.headers["content-security-policy"]


async def test_a_fault_of_the_edge_itself_is_a_500_problem_with_the_request_id(
    tmp_path: Path, part_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The edge sits outside the framework's error layer, so it must answer for its own bugs."""

    async def broken_forward(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug in forwarding")

    monkeypatch.setattr("gateway.edge.forward", broken_forward)
    async with running_gateway(tmp_path, {"intake": part_url}) as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            response = await client.get("/api/intake/echo", headers={"X-Request-ID": "loi-cua-cong-123"})
            body = assert_problem(response, 500, "internal_error")
            assert response.headers["x-request-id"] == "loi-cua-cong-123"
            assert response.headers["x-content-type-options"] == "nosniff"
            assert "RuntimeError" not in response.text and "Traceback" not in response.text
            assert body["instance"].endswith("/api/intake/echo")
            assert (await client.get("/healthz")).status_code == 200


async def test_hsts_when_served_over_https(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, public_base_url="https://api.lienthong.thanhhoa.gov.vn") as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            assert "max-age" in (await client.get("/healthz")).headers["strict-transport-security"]


async def test_cors_from_configuration(tmp_path: Path, part_url: str) -> None:
    portal = "https://dichvucong.thanhhoa.gov.vn"
    async with running_gateway(tmp_path, {"intake": part_url}, cors_origins=[portal]) as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            preflight = await client.options(
                "/api/intake/echo",
                headers={
                    "Origin": portal,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
                },
            )
            assert preflight.status_code == 200
            assert preflight.headers["access-control-allow-origin"] == portal
            assert "POST" in preflight.headers["access-control-allow-methods"]
            stranger = await client.options(
                "/api/intake/echo",
                headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
            )
            assert "access-control-allow-origin" not in stranger.headers
            simple = await client.get("/api/intake/echo", headers={"Origin": portal})
            assert simple.headers["access-control-allow-origin"] == portal
            assert "ratelimit-remaining" in simple.headers["access-control-expose-headers"].lower()
            other = await client.get("/api/intake/echo", headers={"Origin": "https://evil.example"})
            assert "access-control-allow-origin" not in other.headers


async def test_every_request_leaves_an_access_record_without_secrets(tmp_path: Path, part_url: str) -> None:
    broker = InProcessBroker()
    await broker.connect()
    records: list[bytes] = []

    async def collect(deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            # internal, several to a message: the CloudEvents JSON batch format
            assert delivery.content_type == BATCH_CONTENT_TYPE
            records.extend(json.dumps(item).encode() for item in json.loads(delivery.body))
            await delivery.ack()

    await broker.consume("test-access", [], collect, batch=50, prefetch=50, internal=["access.recorded"])
    settings = gateway_settings(tmp_path, {"intake": part_url})
    app = create_app(settings, broker=broker)
    try:
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
            login = await client.post(
                "/api/auth/token",
                data={"grant_type": "password", "username": "leader", "password": "demo"},
                headers={"X-Request-ID": "dang-nhap-1"},
            )
            token = login.json()["access_token"]
            seen = await client.get(
                "/api/intake/items/42?api_key=bi-mat", headers={**bearer(token), "X-Request-ID": "xem-1"}
            )
            assert seen.status_code == 404  # the part's answer; the route is still known
            await client.post("/api/intake/echo", json={"so_cccd": "038012345678"}, headers=bearer(token))
            await client.get("/api/auth/me", headers=bearer("forged.token.here"))
            for _ in range(100):
                if len(records) >= 4:
                    break
                await asyncio.sleep(0.05)
    finally:
        await broker.close()
    events = [from_json(body) for body in records]
    assert all(
        e["type"] == "vn.lienthong.access.recorded.v1" and e["source"] == "urn:lienthong:gateway" for e in events
    )
    by_request = {e.data["request_id"]: e.data for e in events}
    login_record = by_request["dang-nhap-1"]
    assert login_record["route"] == "/api/auth/token" and login_record["status"] == 200
    assert login_record["actor"] is None and login_record["client_ip"] == "127.0.0.1"
    item = by_request["xem-1"]
    assert item == {
        **item,
        "actor": "leader",
        "roles": ["leader"],
        "agency": "000.00.00.H56",
        "method": "GET",
        "route": "/api/intake/items/{item_id}",
        "status": 404,
    }
    assert item["duration_ms"] > 0
    forged = [d for d in by_request.values() if d["status"] == 401]
    assert forged and forged[0]["route"] == "/api/auth/me" and forged[0]["actor"] is None
    sequences = sorted(e["sequence"] for e in events)
    assert len(set(sequences)) == len(sequences)
    everything = b"".join(records).decode()
    for secret in (token, "demo", "bi-mat", "api_key", "038012345678", "forged.token.here"):
        assert secret not in everything, secret


def test_access_record_envelopes_are_exactly_the_cloudevents_the_model_would_write() -> None:
    outbox = Outbox(new_metadata(), service="gateway")
    for actor, agency, request_id, moment in (
        ("Lê Văn Tiếp", "000.00.00.H56", "yeu-cau-1", datetime(2026, 11, 28, 4, 5, 6, 789, tzinfo=UTC)),
        (None, None, None, datetime(2026, 1, 1, tzinfo=UTC)),
        # what JSON must escape, in a client's name (a quote, a backslash, a control character)
        ('Cổng "một cửa" \\ tỉnh\t', "000.00.00.H56", "r:1.2-3", datetime(2026, 6, 30, 23, 59, 59, 1, tzinfo=UTC)),
    ):
        record = {
            "actor": actor,
            "roles": ["desk_officer"] if agency else [],
            "agency": agency,
            "client_ip": "127.0.0.1",
            "method": "POST",
            "route": "/api/intake/dossiers/{code}",
            "status": 201,
            "duration_ms": 3.25,
            "request_id": request_id,
            "at": moment,
        }
        fast = envelope(outbox.source, "e-1", record, "000000000007")
        model = CloudEvent(
            id="e-1",
            source=outbox.source,
            type="vn.lienthong.access.recorded.v1",
            time=moment,
            subject=SUBJECT,
            data=AccessRecorded.model_validate(record).model_dump(mode="json"),
            sequence="000000000007",
            agency=agency,
            **({"requestid": request_id} if request_id else {}),
        )
        assert fast == model.to_bytes()
        assert AccessRecorded.model_validate(CloudEvent.from_bytes(fast).data).status == 201
