"""The whole suite running for a test: embedded (one loop, SQLite, in-process broker) or
distributed (each part its own process, PostgreSQL, RabbitMQ) — same HTTP surface."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from lienthong.embedded import EmbeddedSuite
from shared.settings import PARTS
from tests.servers import temporary_databases, temporary_vhost


def free_ports(n: int) -> list[int]:
    sockets, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports


class Running:
    def __init__(self, gateway_url: str, ports: dict[str, int], mode: str) -> None:
        self.gateway_url = gateway_url
        self.ports = ports
        self.mode = mode
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.env: dict[str, str] = {}

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.gateway_url, **{"timeout": 30, **kwargs})

    async def token(self, username: str, password: str = "demo") -> str:
        async with self.client() as c:
            r = await c.post(
                "/api/auth/token", data={"grant_type": "password", "username": username, "password": password}
            )
            r.raise_for_status()
            return r.json()["access_token"]

    async def auth(self, username: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token(username)}"}


@asynccontextmanager
async def embedded(tmp_path: Path, **extra: Any) -> AsyncIterator[Running]:
    ports = dict(zip(PARTS, free_ports(len(PARTS)), strict=True))
    suite = EmbeddedSuite(var_dir=tmp_path, ports=ports, extra={"log_json": False, **extra})
    await suite.start()
    try:
        yield Running(suite.url(), ports, "embedded")
    finally:
        await suite.stop()


async def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{url} exited with {process.returncode}")
            try:
                r = await client.get(url + "/readyz")
                if r.status_code == 200 and r.json().get("status") == "ok":
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.3)
    raise TimeoutError(f"{url} not ready in {timeout}s")


def distributed_env(db_urls: dict[str, str], amqp_url: str, ports: dict[str, int], var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIENTHONG_")}
    env.update(
        {
            "LIENTHONG_AMQP_URL": amqp_url,
            "LIENTHONG_DEMO": "true",
            "LIENTHONG_LOG_JSON": "true",
            "LIENTHONG_LOG_LEVEL": "WARNING",
            "LIENTHONG_VAR_DIR": str(var_dir),
            "LIENTHONG_JWKS_URL": f"http://127.0.0.1:{ports['gateway']}/api/auth/jwks",
            "LIENTHONG_PUBLIC_BASE_URL": f"http://127.0.0.1:{ports['gateway']}",
            "LIENTHONG_GATEWAY_UPSTREAMS": json.dumps(
                {p: f"http://127.0.0.1:{ports[p]}" for p in PARTS if p != "gateway"}
            ),
        }
    )
    for part in PARTS:
        env[f"LIENTHONG_{part.upper()}_DATABASE_URL"] = db_urls[part]
        env[f"LIENTHONG_{part.upper()}_PORT"] = str(ports[part])
    return env


def workers_env(workers: dict[str, int]) -> dict[str, str]:
    """``LIENTHONG_<PART>_WORKERS`` for each part; a gateway of several workers keeps its rate
    buckets in its database (the only store it accepts then)."""
    env = {f"LIENTHONG_{part.upper()}_WORKERS": str(n) for part, n in workers.items()}
    if workers.get("gateway", 1) > 1:
        env["LIENTHONG_GATEWAY_RATE_LIMIT_STORE"] = "database"
    return env


def start_part(part: str, env: dict[str, str], log_dir: Path) -> subprocess.Popen[bytes]:
    log = open(log_dir / f"{part}.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "lienthong", "serve", part], env=env, stdout=log, stderr=subprocess.STDOUT
    )


@asynccontextmanager
async def distributed(
    tmp_path: Path, *, extra_env: dict[str, str] | None = None, workers: dict[str, int] | None = None
) -> AsyncIterator[Running]:
    """``workers``: worker processes per part (``{"intake": 2}``), others one each."""
    ports = dict(zip(PARTS, free_ports(len(PARTS)), strict=True))
    with temporary_databases(list(PARTS)) as db_urls, temporary_vhost() as amqp_url:
        env = {
            **distributed_env(db_urls, amqp_url, ports, tmp_path),
            **workers_env(workers or {}),
            **(extra_env or {}),
        }
        running = Running(f"http://127.0.0.1:{ports['gateway']}", ports, "distributed")
        running.env = env
        try:
            for part in PARTS:
                running.processes[part] = start_part(part, env, tmp_path)
            for part in PARTS:
                await wait_ready(f"http://127.0.0.1:{ports[part]}", running.processes[part])
            yield running
        finally:
            for process in running.processes.values():
                if process.poll() is None:
                    process.terminate()
            for process in running.processes.values():
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
