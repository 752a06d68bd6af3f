"""Helpers for the gateway's tests: servers on free ports in the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from gateway.app import create_app
from gateway.config import SERVICES, get_settings

# Argon2 at a test cost: the production cost is a deliberate ~0.3 s per hash.
FAST_HASHING = {"password_hash_time_cost": 1, "password_hash_memory_kib": 8192, "password_hash_parallelism": 1}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def serve(app: Any, port: int | None = None, *, lifespan: str = "on") -> AsyncIterator[str]:
    """Run an ASGI app with uvicorn on 127.0.0.1 until the block ends; yields its base URL."""
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan=lifespan,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server did not start")
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def gateway_settings(tmp_path: Path, upstreams: dict[str, str] | None = None, **overrides: Any) -> Any:
    dead = {s: f"http://127.0.0.1:{free_port()}" for s in SERVICES}
    values = {"var_dir": tmp_path, "demo": True, "log_json": False, **FAST_HASHING, **overrides}
    return get_settings(upstreams={**dead, **(upstreams or {})}, **values)


@contextlib.asynccontextmanager
async def running_gateway(
    tmp_path: Path, upstreams: dict[str, str] | None = None, **overrides: Any
) -> AsyncIterator[tuple[str, Any]]:
    app = create_app(gateway_settings(tmp_path, upstreams, **overrides))
    async with serve(app) as url:
        yield url, app


async def token_for(client: httpx.AsyncClient, username: str, password: str = "demo") -> str:
    response = await client.post(
        "/api/auth/token", data={"grant_type": "password", "username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code, body
    return body
