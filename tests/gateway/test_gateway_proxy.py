"""Routing through the gateway: streaming both ways, hop-by-hop headers, timeouts, retries only
for idempotent requests, the circuit breaker, body limits, unknown routes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from gateway.state import GatewayState
from shared import clock
from tests.gateway.gateway_support import assert_problem, free_port, running_gateway, serve

MiB = 1024 * 1024
BIG = 64 * MiB
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


OPENAPI = {
    "openapi": "3.1.0",
    "info": {"title": "fake part", "version": "1"},
    "paths": {
        "/echo": {
            "get": {"x-roles": ["public"], "responses": {}},
            "post": {
                "x-roles": ["public"],
                "requestBody": {"content": {"application/json": {"schema": {}}}},
                "responses": {},
            },
        },
        "/upload": {
            "post": {
                "x-roles": ["public"],
                "requestBody": {"content": {"application/octet-stream": {"schema": {}}}},
                "responses": {},
            }
        },
        "/download": {"get": {"x-roles": ["public"], "responses": {}}},
        "/slow": {"get": {"x-roles": ["public"], "responses": {}}},
        "/items/{item_id}": {"get": {"x-roles": ["public"], "responses": {}}},
    },
}


class FakePart:
    """A part that streams: hashes uploads chunk by chunk, generates downloads chunk by chunk."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        if path == "/openapi.json":
            await _json(send, 200, OPENAPI)
        elif path == "/echo":
            body = b""
            more = True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
            self.seen.append({"path": path, "headers": headers})
            await _json(
                send,
                200,
                {"headers": headers, "query": scope["query_string"].decode(), "body": body.decode()},
                extra=[(b"keep-alive", b"timeout=99"), (b"x-upstream", b"yes"), (b"server", b"fake-part")],
            )
        elif path == "/upload":
            digest = hashlib.sha256()
            size = 0
            more = True
            while more:
                message = await receive()
                chunk = message.get("body", b"")
                digest.update(chunk)
                size += len(chunk)
                more = message.get("more_body", False)
            await _json(send, 200, {"bytes": size, "sha256": digest.hexdigest(), "headers": headers})
        elif path in ("/download", "/download-sized"):
            chunk = _chunk()
            sized = [(b"content-length", str(BIG).encode())] if path == "/download-sized" else []
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream"), *sized],
                }
            )
            for _ in range(BIG // MiB):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        elif path == "/slow":
            await asyncio.sleep(3)
            await _json(send, 200, {"slow": True})
        else:
            await _json(send, 404, {"title": "no"})


def _chunk() -> bytes:
    return hashlib.sha256(b"lienthong").digest() * (MiB // 32)


async def _json(send: Any, status: int, body: Any, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": data})


class FlakyServer:
    """Raw HTTP: the first ``fail_first`` connections are closed without an answer."""

    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.connections = 0
        self.requests: list[str] = []
        self.fail_paths: dict[str, int] = {}
        self.server: asyncio.Server | None = None
        self.port = free_port()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head.split(b"\r\n")[0].decode())
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        if length:
            await reader.readexactly(length)
        path = self.requests[-1].split(" ")[1] if " " in self.requests[-1] else ""
        failing = self.connections <= self.fail_first
        if self.fail_paths.get(path, 0) > 0:
            self.fail_paths[path] -= 1
            failing = True
        if not failing:
            if b"/openapi.json" in head.split(b"\r\n")[0]:
                body = json.dumps({"openapi": "3.1.0", "info": {}, "paths": {}}).encode()
            else:
                body = b'{"ok": true}'
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        writer.close()

    async def __aenter__(self) -> FlakyServer:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest_asyncio.fixture(scope="module")
async def setup(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    part = FakePart()
    tmp = tmp_path_factory.mktemp("proxy")
    async with serve(part, lifespan="off") as intake_url:
        async with running_gateway(
            tmp,
            {"intake": intake_url},
            upstream_timeouts={"intake": 0.5},
            route_body_limits={"POST /api/intake/echo": 1000},
        ) as (url, app):
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                # wait for the gateway to have read the part's document
                for _ in range(100):
                    if GatewayState.of(app.state.runtime).api.documents.get("intake"):
                        break
                    await asyncio.sleep(0.05)
                yield {"client": client, "part": part, "app": app, "url": url}


async def test_a_large_upload_streams_through_without_sitting_in_memory(setup: dict[str, Any]) -> None:
    client: httpx.AsyncClient = setup["client"]
    chunk = _chunk()
    expected = hashlib.sha256()
    for _ in range(BIG // MiB):
        expected.update(chunk)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(BIG // MiB):
            yield chunk

    peak, baseline = 0, rss()

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, rss())
            await asyncio.sleep(0.005)

    sampler = asyncio.create_task(sample())
    response = await client.post(
        "/api/intake/upload",
        content=body(),
        headers={"Content-Length": str(BIG), "Content-Type": "application/octet-stream"},
    )
    sampler.cancel()
    assert response.status_code == 200, response.text
    assert response.json()["bytes"] == BIG
    assert response.json()["sha256"] == expected.hexdigest()
    assert response.json()["headers"]["content-length"] == str(BIG)
    growth = peak - baseline
    assert growth < 24 * MiB, f"RSS grew by {growth / MiB:.1f} MiB while 64 MiB went through"


async def test_a_large_download_streams_through_without_sitting_in_memory(setup: dict[str, Any]) -> None:
    client: httpx.AsyncClient = setup["client"]
    peak, baseline = 0, rss()

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, rss())
            await asyncio.sleep(0.005)

    sampler = asyncio.create_task(sample())
    digest, size = hashlib.sha256(), 0
    async with client.stream("GET", "/api/intake/download") as response:
        assert response.status_code == 200
        async for piece in response.aiter_raw():
            digest.update(piece)
            size += len(piece)
    sampler.cancel()
    expected = hashlib.sha256()
    for _ in range(BIG // MiB):
        expected.update(_chunk())
    assert size == BIG and digest.hexdigest() == expected.hexdigest()
    growth = peak - baseline
    assert growth < 24 * MiB, f"RSS grew by {growth / MiB:.1f} MiB while 64 MiB came through"


async def test_an_unsized_upload_is_streamed_in_chunks(setup: dict[str, Any]) -> None:
    client: httpx.AsyncClient = setup["client"]

    async def body() -> AsyncIterator[bytes]:
        for i in range(3):
            yield bytes([i]) * MiB

    response = await client.post("/api/intake/upload", content=body())
    assert response.status_code == 200
    assert response.json()["bytes"] == 3 * MiB
    assert response.json()["headers"].get("transfer-encoding") == "chunked"


async def test_hop_by_hop_headers_stay_at_the_hop_and_the_request_id_goes_through(setup: dict[str, Any]) -> None:
    client: httpx.AsyncClient = setup["client"]
    response = await client.get(
        "/api/intake/echo?x=1&y=%2F",
        headers={
            "Connection": "keep-alive, X-Hop-Secret",
            "X-Hop-Secret": "only-for-the-gateway",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "X-Forwarded-Prefix": "/pretend",
            "X-Request-ID": "yeu-cau-123",
            "X-Custom": "kept",
        },
    )
    assert response.status_code == 200
    seen = response.json()["headers"]
    for dropped in ("x-hop-secret", "keep-alive", "te", "proxy-authorization"):
        assert dropped not in seen, dropped
    assert seen["x-custom"] == "kept"
    assert seen["x-forwarded-prefix"] == "/api/intake"
    assert seen["x-request-id"] == "yeu-cau-123"
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["traceparent"].startswith("00-")
    assert response.json()["query"] == "x=1&y=%2F"
    # and on the way back
    assert response.headers["x-request-id"] == "yeu-cau-123"
    assert response.headers["x-upstream"] == "yes"
    assert "keep-alive" not in response.headers
    assert response.headers.get_list("server") != ["fake-part"]
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_a_request_id_is_made_when_none_or_a_bad_one_is_given(setup: dict[str, Any]) -> None:
    client: httpx.AsyncClient = setup["client"]
    response = await client.get("/api/intake/echo", headers={"X-Request-ID": "bad id\twith spaces"})
    made = response.headers["x-request-id"]
    assert made != "bad id\twith spaces" and len(made) == 32
    assert response.json()["headers"]["x-request-id"] == made


async def test_a_slow_part_gives_504_after_its_own_timeout(setup: dict[str, Any]) -> None:
    client: httpx.AsyncClient = setup["client"]
    started = asyncio.get_running_loop().time()
    response = await client.get("/api/intake/slow")
    assert_problem(response, 504, "upstream_timeout")
    assert asyncio.get_running_loop().time() - started < 2.5


async def test_bodies_over_the_route_limit_are_413(setup: dict[str, Any]) -> None:
    client: httpx.AsyncClient = setup["client"]
    response = await client.post("/api/intake/echo", content=b"x" * 2000, headers={"Content-Type": "application/json"})
    body = assert_problem(response, 413, "payload_too_large")
    assert body["instance"] == "/api/intake/echo"

    async def unsized() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"y" * 600

    response = await client.post("/api/intake/echo", content=unsized())
    assert_problem(response, 413, "payload_too_large")
    # within the limit it goes through
    response = await client.post("/api/intake/echo", content=b'{"a": 1}', headers={"Content-Type": "application/json"})
    assert response.status_code == 200 and response.json()["body"] == '{"a": 1}'


async def test_unknown_parts_are_404_problems(setup: dict[str, Any]) -> None:
    client: httpx.AsyncClient = setup["client"]
    assert_problem(await client.get("/api/khong-co/x"), 404, "not_found")
    assert_problem(await client.get("/khong-co"), 404)
    response = await client.get("/api/intake/no-such-route")
    assert response.status_code == 404  # the part's own answer
    # an encoded part name reaches the same part, with the rest of the path intact
    response = await client.get("/api/%69ntake/echo?q=%C4%91")
    assert response.status_code == 200 and response.json()["query"] == "q=%C4%91"


async def test_idempotent_requests_are_retried_after_a_dropped_connection(tmp_path: Path) -> None:
    async with FlakyServer(fail_first=0) as flaky:
        flaky.fail_paths = {"/anything": 1}
        async with running_gateway(tmp_path, {"document": f"http://127.0.0.1:{flaky.port}"}) as (url, _):
            async with httpx.AsyncClient(base_url=url) as client:
                response = await client.get("/api/document/anything")
                assert response.status_code == 200, response.text
                assert flaky.requests.count("GET /anything HTTP/1.1") == 2


async def test_non_idempotent_requests_are_never_retried(tmp_path: Path) -> None:
    async with FlakyServer(fail_first=1000) as flaky:
        async with running_gateway(tmp_path, {"document": f"http://127.0.0.1:{flaky.port}"}) as (url, _):
            async with httpx.AsyncClient(base_url=url) as client:
                response = await client.post("/api/document/anything", json={"so": "once"})
                assert_problem(response, 502, "bad_gateway")
                assert flaky.requests.count("POST /anything HTTP/1.1") == 1
                response = await client.put("/api/document/anything", json={"so": "again"})
                assert_problem(response, 502, "bad_gateway")
                assert flaky.requests.count("PUT /anything HTTP/1.1") == 3  # idempotent: 1 + 2 retries


async def test_the_circuit_opens_answers_503_fast_and_closes_after_a_good_trial(tmp_path: Path) -> None:
    port = free_port()
    async with running_gateway(
        tmp_path,
        {"audit": f"http://127.0.0.1:{port}"},
        breaker_failures=3,
        breaker_open_seconds=0.5,
        upstream_retries=0,
    ) as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            for _ in range(3):
                assert_problem(await client.get("/api/audit/entries"), 503, "upstream_unavailable")
            response = await client.get("/api/audit/entries")
            assert_problem(response, 503, "circuit_open")
            assert int(response.headers["retry-after"]) >= 1
            async with serve(FakePart(), port, lifespan="off"):
                # still open: answered without trying the (now healthy) part
                assert_problem(await client.get("/api/audit/echo"), 503, "circuit_open")
                with clock.advanced(0.6):  # past the first trial's wait
                    assert (await client.get("/api/audit/echo")).status_code == 200
                    assert (await client.get("/api/audit/echo")).status_code == 200
