"""The gateway's cost: a small JSON GET at 50 concurrent clients, directly against a part,
through the gateway, and through nginx as a plain reverse proxy, in the same run.

Each target is its own process with one worker (the part: uvicorn; the gateway: ``lienthong
serve gateway`` as shipped, access records and rate limiting on, limits raised so the bench
measures the path, not the limiter; nginx: ``worker_processes 1`` with upstream keep-alive).
Rounds alternate the targets so that the machine's drift hits each alike; medians are reported.

Scale knobs: BENCH_GATEWAY_SECONDS (per target and round, default 8), BENCH_GATEWAY_ROUNDS (3),
BENCH_CLIENTS (50).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from fastapi import FastAPI

from bench.common import write
from bench.load import BENCH_ENV, LoadResult, env_int, expect, only, run_load
from tests.servers import temporary_databases
from tests.suites import free_ports

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
TARGET_RATIO = 0.6
TARGET_ADDED_P50_MS = 2.0

upstream_app = FastAPI(title="bench part")


@upstream_app.get("/ping", openapi_extra={"x-roles": ["public"]})
async def ping() -> dict[str, Any]:
    return {"ok": True, "service": "intake", "message": "Xin chào"}


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream part {{ server 127.0.0.1:{part}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{port};
        location /api/intake/ {{
            proxy_pass http://part/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


async def _wait_http(url: str, process: subprocess.Popen[bytes], within: float = 60) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{url}: the process exited with {process.returncode}")
            try:
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(url)


async def _gateway_ready(url: str) -> None:
    """The gateway has read the part's OpenAPI (its route table knows /api/intake/ping)."""
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            async with http.get(url + "/openapi.json") as response:
                if "/api/intake/ping" in (await response.json())["paths"]:
                    return
            await asyncio.sleep(0.2)
    raise TimeoutError("the gateway did not learn the part's routes")


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = open(log, "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(args, env=env, stdout=handle, stderr=subprocess.STDOUT)


async def _load(target: tuple[str, str], seconds: float, clients: int) -> LoadResult:
    base, path = target

    async def get(http: aiohttp.ClientSession) -> int:
        async with http.get(path) as response:
            return await expect(response)

    return await run_load(only("GET ping", get), base_url=base, concurrency=clients, seconds=seconds)


async def main() -> None:
    seconds = float(env_int("BENCH_GATEWAY_SECONDS", 8))
    rounds = env_int("BENCH_GATEWAY_ROUNDS", 3)
    clients = env_int("BENCH_CLIENTS", 50)
    part_port, gateway_port, nginx_port = free_ports(3)
    # the gateway keeps its rate-limit state and access-record outbox in PostgreSQL, as in
    # distributed mode (SQLite's writer thread would compete for the GIL on this hot path)
    with tempfile.TemporaryDirectory(prefix="lt-bench-gateway-") as scratch, temporary_databases(["gateway"]) as dbs:
        tmp = Path(scratch)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIENTHONG_")}
        env.update(BENCH_ENV)
        env.update(
            {
                "LIENTHONG_VAR_DIR": str(tmp),
                "LIENTHONG_LOG_LEVEL": "WARNING",
                "LIENTHONG_GATEWAY_PORT": str(gateway_port),
                "LIENTHONG_GATEWAY_DATABASE_URL": dbs["gateway"],
                "LIENTHONG_GATEWAY_UPSTREAMS": json.dumps({"intake": f"http://127.0.0.1:{part_port}"}),
            }
        )
        processes = [
            _start(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "bench.gateway:upstream_app",
                    "--port",
                    str(part_port),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                    "--loop",
                    "uvloop",
                    "--http",
                    "httptools",
                ],
                env,
                tmp / "part.log",
            )
        ]
        try:
            await _wait_http(f"http://127.0.0.1:{part_port}/ping", processes[0])
            processes.append(_start([sys.executable, "-m", "lienthong", "serve", "gateway"], env, tmp / "gateway.log"))
            await _wait_http(f"http://127.0.0.1:{gateway_port}/healthz", processes[1])
            await _gateway_ready(f"http://127.0.0.1:{gateway_port}")
            targets = {
                "direct": (f"http://127.0.0.1:{part_port}", "/ping"),
                "gateway": (f"http://127.0.0.1:{gateway_port}", "/api/intake/ping"),
            }
            if shutil.which(NGINX):
                (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, part=part_port, port=nginx_port))
                processes.append(_start([NGINX, "-c", str(tmp / "nginx.conf"), "-p", str(tmp)], env, tmp / "nginx.log"))
                await _wait_http(f"http://127.0.0.1:{nginx_port}/api/intake/ping", processes[-1])
                targets["nginx"] = (f"http://127.0.0.1:{nginx_port}", "/api/intake/ping")
            for target in targets.values():  # warm-up: pools filled, code paths hot
                await _load(target, 1.0, clients)
            measured: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
            for _ in range(rounds):
                for name, target in targets.items():
                    result = await _load(target, seconds, clients)
                    measured[name].append(result.summary())
        finally:
            for process in reversed(processes):
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()

    figures: dict[str, Any] = {"clients": clients, "seconds_per_round": seconds, "rounds": rounds, "targets": {}}
    for name, runs in measured.items():
        figures["targets"][name] = {
            "requests_per_s": round(statistics.median(r["requests_per_s"] for r in runs), 1),
            "p50_ms": round(statistics.median(r["p50_ms"] for r in runs), 2),
            "p99_ms": round(statistics.median(r["p99_ms"] for r in runs), 2),
            "errors": sum(r["errors"] for r in runs),
            "runs": runs,
        }
    direct, gateway = figures["targets"]["direct"], figures["targets"]["gateway"]
    figures["gateway_over_direct"] = round(gateway["requests_per_s"] / direct["requests_per_s"], 3)
    figures["gateway_added_p50_ms"] = round(gateway["p50_ms"] - direct["p50_ms"], 2)
    figures["targets_met"] = {
        f"throughput >= {TARGET_RATIO} of direct": figures["gateway_over_direct"] >= TARGET_RATIO,
        f"adds <= {TARGET_ADDED_P50_MS} ms at p50": figures["gateway_added_p50_ms"] <= TARGET_ADDED_P50_MS,
    }
    for name, t in figures["targets"].items():
        print(
            f"gateway bench {name:8s} {t['requests_per_s']:8.1f} req/s  p50 {t['p50_ms']:6.2f} ms  "
            f"p99 {t['p99_ms']:7.2f} ms  errors {t['errors']}"
        )
    print(f"gateway/direct throughput {figures['gateway_over_direct']}, added p50 {figures['gateway_added_p50_ms']} ms")
    print(f"written to {write('gateway', figures)}")


if __name__ == "__main__":
    asyncio.run(main())
